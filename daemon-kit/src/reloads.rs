//! Outcome counts of configuration reloads (SIGHUP), the same in both daemons: how many applied,
//! how many were refused (the old configuration kept serving), and the last refusal's errors,
//! for `/v1/status` and `/metrics`.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Reload outcomes; written by the control thread, read by the admin endpoint.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that applied a new configuration.
    pub ok: AtomicU64,
    /// Reloads refused (the old configuration kept serving).
    pub failed: AtomicU64,
    /// The last refusal's errors, one per line.
    pub last_error: Mutex<Option<String>>,
}

impl ReloadStats {
    /// Counts a reload that applied.
    pub fn record_ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused reload and keeps its errors.
    pub fn record_failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// `{"ok": …, "failed": …, "last_error": …}` for `/v1/status`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "last_error": self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_and_the_last_error_kept() {
        let r = ReloadStats::default();
        r.record_ok();
        r.record_failed("a.toml:1:1: one".into());
        r.record_failed("a.toml:2:1: two".into());
        let j = r.json();
        assert_eq!((j["ok"].as_u64(), j["failed"].as_u64()), (Some(1), Some(2)));
        assert_eq!(j["last_error"], "a.toml:2:1: two");
    }
}
