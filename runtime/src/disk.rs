//! `FsDisk`: core's `Disk` on the real filesystem with `std::fs`.
//!
//! Calls block, so the runtime makes them from threads where blocking is fine (a store's own
//! thread or `spawn_blocking`), never from a reactor thread. Paths are resolved under a root
//! directory. Open files are cached so a store's appends and reads do not reopen per call.
//!
//! Durability maps one to one: `sync` is `fsync` (`File::sync_all`), `sync_dir` opens the
//! directory and fsyncs it, which is what makes creates, renames and removals durable on
//! Linux filesystems.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use fjord_core::disk::{check_path, Disk, DiskError};

pub struct FsDisk {
    root: PathBuf,
    open: HashMap<String, File>,
}

impl FsDisk {
    /// A disk rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(FsDisk { root, open: HashMap::new() })
    }

    fn full(&self, path: &str) -> Result<PathBuf, DiskError> {
        if !path.is_empty() {
            check_path(path)?;
        }
        Ok(self.root.join(path))
    }

    fn file(&mut self, path: &str) -> Result<&mut File, DiskError> {
        if !self.open.contains_key(path) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.full(path)?)
                .map_err(|e| err("open", path, e))?;
            self.open.insert(path.to_string(), f);
        }
        self.open.get_mut(path).ok_or_else(|| DiskError::NotFound(path.to_string()))
    }
}

fn err(op: &'static str, path: &str, e: std::io::Error) -> DiskError {
    match e.kind() {
        ErrorKind::NotFound => DiskError::NotFound(path.to_string()),
        ErrorKind::StorageFull => DiskError::NoSpace,
        _ => DiskError::Io { op, path: path.to_string(), detail: e.to_string() },
    }
}

impl Disk for FsDisk {
    fn create(&mut self, path: &str) -> Result<(), DiskError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.full(path)?)
            .map_err(|e| err("create", path, e))?;
        self.open.insert(path.to_string(), f);
        Ok(())
    }

    fn exists(&mut self, path: &str) -> Result<bool, DiskError> {
        Ok(self.full(path)?.exists())
    }

    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        Ok(self.file(path)?.metadata().map_err(|e| err("stat", path, e))?.len())
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        let f = self.file(path)?;
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(err("read", path, e)),
            }
        }
        Ok(done)
    }

    fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.file(path)?.write_all_at(data, offset).map_err(|e| err("write", path, e))
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, DiskError> {
        let f = self.file(path)?;
        let offset = f.seek(SeekFrom::End(0)).map_err(|e| err("seek", path, e))?;
        f.write_all(data).map_err(|e| err("append", path, e))?;
        Ok(offset)
    }

    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        self.file(path)?.sync_all().map_err(|e| err("fsync", path, e))
    }

    fn truncate(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        self.file(path)?.set_len(len).map_err(|e| err("truncate", path, e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        fs::rename(self.full(from)?, self.full(to)?).map_err(|e| err("rename", from, e))?;
        self.open.remove(to);
        if let Some(f) = self.open.remove(from) {
            self.open.insert(to.to_string(), f);
        }
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        self.open.remove(path);
        fs::remove_file(self.full(path)?).map_err(|e| err("remove", path, e))
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, DiskError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.full(dir)?).map_err(|e| err("list", dir, e))? {
            let entry = entry.map_err(|e| err("list", dir, e))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&mut self, dir: &str) -> Result<(), DiskError> {
        File::open(self.full(dir)?).and_then(|d| d.sync_all()).map_err(|e| err("fsync dir", dir, e))
    }

    fn create_dir_all(&mut self, dir: &str) -> Result<(), DiskError> {
        fs::create_dir_all(self.full(dir)?).map_err(|e| err("mkdir", dir, e))
    }

    fn read_all(&mut self, path: &str) -> Result<Vec<u8>, DiskError> {
        let f = self.file(path)?;
        f.seek(SeekFrom::Start(0)).map_err(|e| err("seek", path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| err("read", path, e))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_core::store::{FileStore, FileStoreConfig, Limits, StreamStore};

    #[test]
    fn file_store_on_the_real_disk_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("fjord-fsdisk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut cfg = FileStoreConfig::new("s/msgs");
        cfg.block_size = 4096;
        let (mut store, _) =
            FileStore::open(FsDisk::new(&dir).unwrap(), cfg.clone(), Limits::default()).unwrap();
        for i in 0..500u32 {
            store.store(b"a.b", b"", &i.to_le_bytes(), i as i64, None).unwrap();
        }
        store.remove(7).unwrap();
        assert_eq!(store.flush().unwrap().len(), 500);
        store.checkpoint().unwrap();
        store.store(b"a.c", b"", b"tail", 1000, None).unwrap();
        store.flush().unwrap();
        drop(store);
        let (mut store, report) =
            FileStore::open(FsDisk::new(&dir).unwrap(), cfg, Limits::default()).unwrap();
        assert!(report.used_checkpoint, "{report:?}");
        assert_eq!(store.state().msgs, 500);
        assert_eq!(store.load(7).unwrap(), None);
        assert_eq!(&store.load(9).unwrap().unwrap().payload[..], &8u32.to_le_bytes());
        assert_eq!(&store.load_last(b"a.c").unwrap().unwrap().payload[..], b"tail");
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Group-commit throughput on the real disk (not a timed test: run with
/// `FJORD_BENCH_DIR=<dir on the disk to measure> cargo test --release -p fjord --lib
/// disk::bench -- --ignored --nocapture`). With W writers each waiting for its acknowledgement,
/// a store actor appends whatever arrived and syncs once, so W appends share each sync: this
/// measures that loop (W stores, one flush) directly.
#[cfg(test)]
mod bench {
    use super::*;
    use fjord_core::store::{FileStore, FileStoreConfig, Limits, StreamStore};
    use std::time::{Duration, Instant};

    #[test]
    #[ignore]
    fn group_commit_appends_per_second() {
        let base = std::env::var("FJORD_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        for size in [128usize, 1024] {
            for writers in [1usize, 16, 256] {
                let dir = base.join(format!("fjord-bench-{}-{size}-{writers}", std::process::id()));
                let _ = fs::remove_dir_all(&dir);
                let (mut store, _) = FileStore::open(
                    FsDisk::new(&dir).unwrap(),
                    FileStoreConfig::new("s/msgs"),
                    Limits::default(),
                )
                .unwrap();
                let payload = vec![7u8; size];
                let (mut acked, mut syncs) = (0u64, 0u64);
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(2) {
                    for _ in 0..writers {
                        store.store(b"bench.subject", b"", &payload, 0, None).unwrap();
                    }
                    acked += store.flush().unwrap().len() as u64;
                    syncs += 1;
                }
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "size {size:>5} B  writers {writers:>3}  {:>9.0} acked appends/s  {:>7.0} syncs/s  {:>7.1} MB/s",
                    acked as f64 / secs,
                    syncs as f64 / secs,
                    acked as f64 * size as f64 / secs / 1e6
                );
                drop(store);
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
}
