//! What both daemons (the MUX and the host agent) share around their data paths: plumbing, not
//! packet logic and not I/O ports.
//!
//! - [`admin_server`]: the admin endpoint's HTTP loop.
//! - [`prometheus_text`]: metric families for `/metrics`.
//! - [`logging`]: the tracing subscriber setup.
//! - [`reloads`]: reload outcome counts for status and metrics.
//! - [`signals`]: SIGHUP (reload) and SIGTERM/SIGINT (drain and stop) as a pollable set.
//! - [`config`]: the configuration error machinery both config parsers are built on (every
//!   error at once, with `FILE:LINE:COL`), the value types they share and [`config::Protocol`].
//!   Each daemon owns its schema (the MUX's is `mux::config`).
//!
//! Why a crate of its own: it is neither pure packet code (`mux-packet`) nor the unsafe I/O
//! edge (`mux-ports`), and neither daemon should depend on the other for it.
#![deny(unsafe_code)]

pub mod admin_server;
pub mod config;
pub mod logging;
pub mod prometheus_text;
pub mod reloads;
pub mod signals;
