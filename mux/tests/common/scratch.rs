//! A scratch directory for one test, removed when it goes out of scope.

use std::path::PathBuf;

/// `$TMPDIR/mux-test-NAME-PID`, emptied at creation and removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory; `name` tells the tests of one binary apart (the PID tells binaries
    /// and runs apart).
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mux-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// `file` inside it.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
