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

/// Store benchmarks on the real disk (not timed tests). Run them with
/// `FJORD_BENCH_DIR=<dir on the disk to measure> cargo test --release -p fjord --lib
/// disk::bench -- --ignored --nocapture --test-threads 1`; each figure is the median of three
/// runs (all three printed), with encryption off and on.
#[cfg(test)]
mod bench {
    use super::*;
    use fjord_core::store::{
        Cipher, Encryption, FileStore, FileStoreConfig, Limits, StoreKey, StreamStore,
    };
    use std::time::{Duration, Instant};

    const RUN: Duration = Duration::from_secs(2);

    fn base() -> PathBuf {
        std::env::var("FJORD_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir())
    }

    fn config(encrypted: bool) -> FileStoreConfig {
        let mut c = FileStoreConfig::new("s/msgs");
        if encrypted {
            c.encryption = Some(Encryption {
                key: StoreKey::derive(b"bench key", b"BENCH"),
                cipher: Cipher::ChaChaPoly,
                seed: rand::random(),
            });
        }
        c
    }

    fn label(encrypted: bool) -> &'static str {
        if encrypted {
            "chachapoly"
        } else {
            "plain"
        }
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = base().join(format!("fjord-bench-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A new, empty store in a fresh directory.
    fn open_fresh(name: &str, encrypted: bool) -> (FileStore<FsDisk>, PathBuf) {
        let dir = fresh_dir(name);
        let (store, _) =
            FileStore::open(FsDisk::new(&dir).unwrap(), config(encrypted), Limits::default())
                .unwrap();
        (store, dir)
    }

    /// A fresh store of `msgs` 1 KiB messages, flushed every `batch`, checkpointed, closed.
    fn filled(name: &str, encrypted: bool, msgs: u64, batch: u64) -> PathBuf {
        let (mut store, dir) = open_fresh(name, encrypted);
        let payload = vec![7u8; 1024];
        for i in 0..msgs {
            store.store(b"bench.subject", b"", &payload, i as i64, None).unwrap();
            if i % batch == batch - 1 {
                store.flush().unwrap();
            }
        }
        store.checkpoint().unwrap();
        dir
    }

    /// The median of three runs of `f`, and all three.
    fn median3(mut f: impl FnMut() -> f64) -> (f64, [f64; 3]) {
        let runs = [f(), f(), f()];
        let mut sorted = runs;
        sorted.sort_by(f64::total_cmp);
        (sorted[1], runs)
    }

    fn report(what: &str, unit: &str, (median, runs): (f64, [f64; 3])) {
        println!(
            "{what:<52} median {median:>10.0} {unit}   runs {:.0} / {:.0} / {:.0}",
            runs[0], runs[1], runs[2]
        );
    }

    /// With W writers each waiting for its acknowledgement, a store actor appends whatever
    /// arrived and syncs once, so W appends share each sync: this measures that loop (W
    /// stores, one flush) directly.
    #[test]
    #[ignore]
    fn group_commit_appends_per_second() {
        for encrypted in [false, true] {
            for size in [128usize, 1024] {
                for writers in [1usize, 16, 256] {
                    let figure = median3(|| {
                        let (mut store, dir) =
                            open_fresh(&format!("gc-{size}-{writers}"), encrypted);
                        let payload = vec![7u8; size];
                        let mut acked = 0u64;
                        let start = Instant::now();
                        while start.elapsed() < RUN {
                            for _ in 0..writers {
                                store.store(b"bench.subject", b"", &payload, 0, None).unwrap();
                            }
                            acked += store.flush().unwrap().len() as u64;
                        }
                        let rate = acked as f64 / start.elapsed().as_secs_f64();
                        drop(store);
                        let _ = fs::remove_dir_all(&dir);
                        rate
                    });
                    let what = format!(
                        "sync always {size:>4} B {writers:>3} writers {}",
                        label(encrypted)
                    );
                    report(&what, "appends/s", figure);
                }
            }
        }
    }

    /// Interval mode: appends are not waited on; the driver syncs once per `INTERVAL` (and
    /// may lose up to that much acknowledged data on power loss).
    #[test]
    #[ignore]
    fn interval_sync_appends_per_second() {
        const INTERVAL: Duration = Duration::from_secs(1);
        for encrypted in [false, true] {
            for size in [128usize, 1024] {
                let figure = median3(|| {
                    let (mut store, dir) = open_fresh(&format!("interval-{size}"), encrypted);
                    let payload = vec![7u8; size];
                    let mut stored = 0u64;
                    let start = Instant::now();
                    let mut last_sync = start;
                    while start.elapsed() < RUN {
                        for _ in 0..64 {
                            store.store(b"bench.subject", b"", &payload, 0, None).unwrap();
                        }
                        stored += 64;
                        if last_sync.elapsed() >= INTERVAL {
                            store.flush().unwrap();
                            last_sync = Instant::now();
                        }
                    }
                    store.flush().unwrap();
                    let rate = stored as f64 / start.elapsed().as_secs_f64();
                    drop(store);
                    let _ = fs::remove_dir_all(&dir);
                    rate
                });
                let what = format!("sync every 1 s {size:>4} B {}", label(encrypted));
                report(&what, "appends/s", figure);
            }
        }
    }

    /// Loads of 1 KiB messages from a 64 Ki-message store (~68 MB, twice the default 32 MiB
    /// block cache), in order and at random, after a reopen (so through recovery's index).
    #[test]
    #[ignore]
    fn loads_per_second() {
        const MSGS: u64 = 64 * 1024;
        for encrypted in [false, true] {
            let dir = filled("loads", encrypted, MSGS, 1024);
            let (mut store, _) =
                FileStore::open(FsDisk::new(&dir).unwrap(), config(encrypted), Limits::default())
                    .unwrap();
            let sequential = median3(|| {
                let (mut n, mut seq) = (0u64, 1u64);
                let start = Instant::now();
                while start.elapsed() < RUN {
                    assert!(store.load(seq).unwrap().is_some());
                    seq = seq % MSGS + 1;
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            });
            report(&format!("load sequential 1 KiB {}", label(encrypted)), "loads/s", sequential);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let random = median3(|| {
                let mut n = 0u64;
                let start = Instant::now();
                while start.elapsed() < RUN {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    assert!(store.load(x % MSGS + 1).unwrap().is_some());
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            });
            report(&format!("load random 1 KiB {}", label(encrypted)), "loads/s", random);
            drop(store);
            let _ = fs::remove_dir_all(&dir);
        }
    }

    /// Opening a 1 GiB store (1 Mi messages of 1 KiB) with a valid checkpoint and without one
    /// (a full scan of every block). The blocks are in the page cache (just written), so this
    /// is the CPU cost of recovery, not the disk's read rate.
    #[test]
    #[ignore]
    fn recovery_of_a_1_gib_store() {
        const MSGS: u64 = 1 << 20;
        for encrypted in [false, true] {
            let dir = filled("recovery", encrypted, MSGS, 4096);
            let open_ms = |remove_checkpoint: bool| {
                let ckp = dir.join("s/msgs/index.ckp");
                let saved = fs::read(&ckp).unwrap();
                if remove_checkpoint {
                    fs::remove_file(&ckp).unwrap();
                }
                let start = Instant::now();
                let (store, report) = FileStore::open(
                    FsDisk::new(&dir).unwrap(),
                    config(encrypted),
                    Limits::default(),
                )
                .unwrap();
                let ms = start.elapsed().as_secs_f64() * 1e3;
                assert_eq!(store.state().msgs, MSGS);
                assert_eq!(report.used_checkpoint, !remove_checkpoint);
                drop(store);
                fs::write(&ckp, saved).unwrap();
                ms
            };
            report(
                &format!("open 1 GiB, valid checkpoint {}", label(encrypted)),
                "ms",
                median3(|| open_ms(false)),
            );
            report(
                &format!("open 1 GiB, no checkpoint (full scan) {}", label(encrypted)),
                "ms",
                median3(|| open_ms(true)),
            );
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
