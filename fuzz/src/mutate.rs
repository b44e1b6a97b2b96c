//! Byte-level mutation of corpus inputs, and the small random generator that drives it.
//!
//! What this module owns: turning one input (and the rest of the corpus) into a new input. The
//! mutators are the ones AFL and libFuzzer showed to pay off on binary formats: flip a bit, set
//! a byte or a big-endian 16/32-bit word to an "interesting" value (0, 1, -1, the signed
//! extremes, lengths around the headers' sizes), add a small delta to a byte or word, insert,
//! delete, duplicate or overwrite a range, splice in a range of another corpus input, insert a
//! token of the target's dictionary (TOML keys, EtherTypes, protocol numbers), truncate.
//! One to eight of them are stacked per new input (libFuzzer's default depth is 5).
//!
//! The generator is wyrand: 64-bit state, one multiply per number, good enough statistics for
//! mutation and fully reproducible from `--seed`. Rejected: the `rand` crate (a dependency for
//! one function), and `std`'s `RandomState` (not seedable, so a run could not be repeated).

/// wyrand: a seeded 64-bit generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Values that sit on the edges of length and range checks.
const INTERESTING_8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 5, 8, 20, 40];
const INTERESTING_16: [u16; 14] = [
    0, 1, 0x7fff, 0x8000, 0xffff, 20, 40, 60, 576, 1280, 1500, 0x0800, 0x86dd, 0x8100,
];
const INTERESTING_32: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 65_536];

/// Applies 1..=8 random mutations to `input`, keeping it at most `max_len` bytes. `corpus`
/// feeds the splice mutator, `dictionary` the token mutator.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    max_len: usize,
    corpus: &[Vec<u8>],
    dictionary: &[&[u8]],
) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        mutate_once(rng, input, corpus, dictionary);
    }
    input.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    if input.is_empty() {
        let n = 1 + rng.below(16);
        input.extend((0..n).map(|_| rng.byte()));
        return;
    }
    let len = input.len();
    match rng.below(13) {
        0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len);
            input[i] = rng.byte();
        }
        2 => {
            let i = rng.below(len);
            input[i] = INTERESTING_8[rng.below(INTERESTING_8.len())];
        }
        3 if len >= 2 => {
            let i = rng.below(len - 1);
            let v = INTERESTING_16[rng.below(INTERESTING_16.len())];
            input[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        4 if len >= 4 => {
            let i = rng.below(len - 3);
            let v = INTERESTING_32[rng.below(INTERESTING_32.len())];
            input[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        5 => {
            // Arithmetic on a byte or a big-endian word: lengths and counters off by a little.
            let delta = rng.below(35) as i32 - 17;
            if len >= 2 && rng.one_in(2) {
                let i = rng.below(len - 1);
                let v = u16::from_be_bytes([input[i], input[i + 1]]);
                let v = (i32::from(v) + delta) as u16;
                input[i..i + 2].copy_from_slice(&v.to_be_bytes());
            } else {
                let i = rng.below(len);
                input[i] = (i32::from(input[i]) + delta) as u8;
            }
        }
        6 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fill = rng.byte();
            let random = rng.one_in(2);
            let bytes: Vec<u8> = (0..n)
                .map(|_| if random { rng.byte() } else { fill })
                .collect();
            input.splice(i..i, bytes);
        }
        7 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(32));
            input.drain(i..i + n);
        }
        8 => {
            // Duplicate a range (repeated headers, options, extension headers).
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            let copy = input[i..i + n].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, copy);
        }
        9 if !corpus.is_empty() => {
            // Splice: a range of another input, inserted or overwritten.
            let other = &corpus[rng.below(corpus.len())];
            if other.is_empty() {
                return;
            }
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(128));
            let piece = &other[from..from + n];
            let at = rng.below(len);
            if rng.one_in(2) {
                input.splice(at..at, piece.iter().copied());
            } else {
                let end = (at + n).min(len);
                input[at..end].copy_from_slice(&piece[..end - at]);
            }
        }
        10 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            if rng.one_in(2) || at + token.len() > len {
                input.splice(at..at, token.iter().copied());
            } else {
                input[at..at + token.len()].copy_from_slice(token);
            }
        }
        11 => {
            let keep = rng.below(len);
            input.truncate(keep);
        }
        _ => {
            // Copy a range within the input over another place.
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(32));
            let to = rng.below(len);
            let n = n.min(len - to);
            let piece = input[from..from + n].to_vec();
            input[to..to + n].copy_from_slice(&piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_reproducible_and_spreads() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[a.below(10)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn mutation_respects_the_length_cap_and_changes_inputs() {
        let mut rng = Rng::new(7);
        let corpus = vec![vec![1u8; 100], vec![2u8; 3]];
        let dictionary: &[&[u8]] = &[b"weight", b"\x08\x00"];
        let mut changed = 0;
        for _ in 0..10_000 {
            let mut input = corpus[0].clone();
            mutate(&mut rng, &mut input, 120, &corpus, dictionary);
            assert!(input.len() <= 120);
            changed += usize::from(input != corpus[0]);
        }
        assert!(
            changed > 9_000,
            "{changed} of 10000 mutations changed the input"
        );
    }
}
