//! The configuration machinery both daemons' parsers are built on: TOML into spanned structs
//! with every unknown key, missing key, wrong type and malformed value recorded
//! ([`collect`]), a [`Collector`] the semantic rules add to, and a [`ConfigErrors`] whose
//! messages read `FILE:LINE:COL: CONTEXT: what is wrong (got VALUE); how to fix it`, in file
//! order. Also the value types both schemas use ([`values`], [`Protocol`]) and [`read_file`].
//!
//! The schemas themselves belong to their daemons: `mux::config` and `hostagent::config`.

pub mod collect;
mod error;
mod location;
mod protocol;
pub mod values;

use std::path::Path;

pub use error::{Collector, ConfigError, ConfigErrors, from_toml};
pub use protocol::Protocol;

/// Reads a configuration file's text and the name messages should show for it. A file that
/// cannot be read (missing, unreadable, not UTF-8) is one error with line 0. Shared by every
/// binary's `load_file`.
pub fn read_file(path: &Path) -> Result<(String, String), ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: origin.clone(),
            line: 0,
            column: 0,
            message: format!(
                "cannot read the configuration file: {e}; check the path, its permissions \
                 and that it is UTF-8 text"
            ),
        }])
    })?;
    Ok((origin, text))
}
