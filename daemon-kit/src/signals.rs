//! The daemons' signal flags: SIGHUP asks for a reload, SIGTERM or SIGINT for a graceful stop.
//!
//! The handlers only set atomic flags (`signal-hook`), which the control thread polls every
//! tick: no work happens in signal context, and the data path never sees a signal. Both
//! `mux run` and `hostagent run` use this one type.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Flags set by the signal handlers, polled (and cleared) by the control thread.
#[derive(Debug)]
pub struct Signals {
    /// Set by SIGHUP.
    pub reload: Arc<AtomicBool>,
    /// Set by SIGTERM or SIGINT.
    pub terminate: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers.
    pub fn register() -> Result<Signals, String> {
        let reload = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        let err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
            .map_err(err)?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&terminate)).map_err(err)?;
        }
        Ok(Signals { reload, terminate })
    }
}
