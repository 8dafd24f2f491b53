//! A fresh JetStream store directory per test, removed on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct StoreDir(pub PathBuf);

impl StoreDir {
    /// A new empty directory under the system temp dir, named after `tag`, this process and a
    /// counter, so parallel tests never share one.
    pub fn new(tag: &str) -> StoreDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fjord-js-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create store dir");
        StoreDir(dir)
    }

    /// The path as a `-sd` argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
