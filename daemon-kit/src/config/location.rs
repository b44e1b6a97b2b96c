//! Byte offsets into the configuration text → 1-based line and column.
//!
//! `toml` and `serde_spanned` report byte ranges; operators and editors want `FILE:LINE:COL`.
//! Lines are split at `\n` (so a `\r\n` file counts its lines the same way); the column counts
//! Unicode scalar values from the start of the line, starting at 1, so a value after a
//! non-ASCII comment or name is still pointed at correctly. Offsets past the end or inside a
//! multi-byte character are clamped, never a panic.

/// Maps byte offsets of one text to line:column pairs.
#[derive(Debug)]
pub(crate) struct Locator<'a> {
    text: &'a str,
    /// Byte offset of the first byte of every line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    /// Indexes the line starts of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Locator { text, line_starts }
    }

    /// Returns the 1-based `(line, column)` of byte `offset`.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The number of line starts at or before `offset` is the 1-based line number.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::Locator;

    #[test]
    fn first_byte_is_line_1_column_1() {
        assert_eq!(Locator::new("abc").locate(0), (1, 1));
        assert_eq!(Locator::new("").locate(0), (1, 1));
    }

    #[test]
    fn lines_and_columns_are_1_based() {
        let text = "ab\ncd\r\n\nxyz";
        let at = Locator::new(text);
        assert_eq!(at.locate(1), (1, 2));
        assert_eq!(at.locate(2), (1, 3)); // the '\n' itself ends line 1
        assert_eq!(at.locate(3), (2, 1));
        assert_eq!(at.locate(5), (2, 3)); // '\r'
        assert_eq!(at.locate(7), (3, 1));
        assert_eq!(at.locate(10), (4, 3));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "# é\nname = \"ü\" x";
        let at = Locator::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(at.locate(x), (2, 12));
    }

    #[test]
    fn out_of_range_and_mid_character_offsets_are_clamped() {
        let text = "é\nz";
        let at = Locator::new(text);
        assert_eq!(at.locate(1), (1, 1)); // inside 'é' → its start
        assert_eq!(at.locate(1000), (2, 2)); // past the end → end of text
    }
}
