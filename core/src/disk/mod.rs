//! The `Disk` trait: the only way persistent structures in core touch storage.
//!
//! Core is sans-IO, so stores and logs do not open files: they call a `Disk` the driver hands
//! them. The runtime implements it with `std::fs` (on threads where blocking is fine); the
//! simulator and the tests use [`MemDisk`], which keeps files in memory and injects the faults a
//! real disk shows under power loss (lost unsynced writes, torn writes, lost directory entries,
//! bit flips, read errors, a full disk).
//!
//! Calls are synchronous and return `Result<_, DiskError>`: a sans-IO state machine decides
//! *what* to write and when to sync; the driver decides on which thread the call blocks.
//!
//! Paths are `/`-separated and relative to the disk's root; a path's directory is everything
//! before its last `/` (the root is `""`). Durability follows POSIX, which is what makes the
//! model honest:
//! - data written to a file is durable only after `sync(file)` returns;
//! - a file's *name* (create, rename, remove) is durable only after `sync_dir(its directory)`.

mod mem;

pub use mem::{FaultConfig, MemDisk};

/// Why a disk call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The file does not exist.
    NotFound(String),
    /// No space left: nothing of the write took effect.
    NoSpace,
    /// A path that is empty, absolute, or has an empty component.
    InvalidPath(String),
    /// Any other I/O failure (an injected read error, EIO from the kernel, ...).
    Io { op: &'static str, path: String, detail: String },
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskError::NotFound(p) => write!(f, "file not found: {p}"),
            DiskError::NoSpace => f.write_str("no space left on disk"),
            DiskError::InvalidPath(p) => write!(f, "invalid path: {p:?}"),
            DiskError::Io { op, path, detail } => write!(f, "{op} {path}: {detail}"),
        }
    }
}

impl std::error::Error for DiskError {}

/// Storage as core sees it. Every method may block; none may be called concurrently on the same
/// value (it is `&mut self`), which keeps fault injection deterministic.
pub trait Disk {
    /// Creates `path` empty, truncating it if it exists. The name is durable after `sync_dir`.
    fn create(&mut self, path: &str) -> Result<(), DiskError>;
    /// Does `path` exist (as the running process sees it)?
    fn exists(&mut self, path: &str) -> Result<bool, DiskError>;
    /// The file's length in bytes.
    fn len(&mut self, path: &str) -> Result<u64, DiskError>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read, fewer only at end
    /// of file.
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError>;
    /// Writes `data` at `offset`, extending the file (with zeros in any gap) if needed.
    fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Appends `data` and returns the offset it was written at.
    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, DiskError>;
    /// Makes the file's data (and length) durable.
    fn sync(&mut self, path: &str) -> Result<(), DiskError>;
    /// Cuts (or zero-extends) the file to `len` bytes.
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), DiskError>;
    /// Renames `from` to `to`, atomically replacing `to`. Durable after `sync_dir` of both
    /// directories.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError>;
    /// Removes the file. Durable after `sync_dir`.
    fn remove(&mut self, path: &str) -> Result<(), DiskError>;
    /// Names (not paths) of the files directly inside `dir`, sorted.
    fn list(&mut self, dir: &str) -> Result<Vec<String>, DiskError>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&mut self, dir: &str) -> Result<(), DiskError>;
    /// Creates `dir` and its parents. Directories themselves are assumed durable once created
    /// (stores create theirs once, at setup, and sync it).
    fn create_dir_all(&mut self, dir: &str) -> Result<(), DiskError>;

    /// The whole file.
    fn read_all(&mut self, path: &str) -> Result<Vec<u8>, DiskError> {
        let len = self.len(path)?;
        let len = usize::try_from(len).map_err(|_| DiskError::Io {
            op: "read_all",
            path: path.to_string(),
            detail: "file larger than memory".into(),
        })?;
        let mut buf = vec![0; len];
        let n = self.read_at(path, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Replaces `path` atomically and durably: write a temporary file, sync it, rename it over
    /// `path`, sync the directory. After a crash the file holds either the old or the new bytes.
    fn replace_atomically(&mut self, path: &str, data: &[u8]) -> Result<(), DiskError> {
        let tmp = format!("{path}.tmp");
        self.create(&tmp)?;
        self.write_at(&tmp, 0, data)?;
        self.sync(&tmp)?;
        self.rename(&tmp, path)?;
        self.sync_dir(parent(path))
    }
}

/// The directory part of a path: everything before the last `/`, or `""` for the root.
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Joins a directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Refuses paths the two implementations would read differently.
pub fn check_path(path: &str) -> Result<(), DiskError> {
    if path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|c| c.is_empty() || c == "..")
    {
        return Err(DiskError::InvalidPath(path.to_string()));
    }
    Ok(())
}
