//! `MemDisk`: an in-memory `Disk` with the faults of a real one, driven by a seeded RNG.
//!
//! The model keeps two views of everything:
//! - what the running process sees (`names`, each inode's `data`);
//! - what would be found after a power loss (`durable_names`, each inode's `synced` bytes).
//!
//! `sync(file)` moves a file's pending writes into its durable bytes; `sync_dir(dir)` moves the
//! directory's pending name changes into the durable namespace. `crash()` throws the process
//! view away and rebuilds it from the durable one. With `torn_writes` on, a crash also lets a
//! random prefix of the pending work reach the platter, the last write of it torn at a block
//! boundary, as disks that reorder nothing within a file but lose power mid-write do.
//!
//! Media faults act on durable bytes as well: `flip_bit` is corruption at rest, which no sync
//! protects against and which only checksums catch.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{check_path, parent, Disk, DiskError};

/// Which faults a `MemDisk` injects. `Default` injects none: writes are lost on `crash()` only
/// if unsynced, never torn.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// On crash, let a random prefix of unsynced writes and name changes survive, the last
    /// write cut at a `tear_block` boundary.
    pub torn_writes: bool,
    /// The unit a torn write is cut at (a sector).
    pub tear_block: u64,
    /// Chance that a read fails, in millionths.
    pub read_error_per_million: u32,
    /// Total bytes the disk holds; a write that would exceed it fails with `NoSpace` and has
    /// no effect.
    pub capacity: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            torn_writes: false,
            tear_block: 512,
            read_error_per_million: 0,
            capacity: None,
        }
    }
}

/// One write or resize not yet covered by a sync, kept so a crash can replay a prefix of them.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    pending: Vec<Pending>,
}

/// A name change not yet covered by `sync_dir` of its directory.
#[derive(Clone, Debug)]
enum NameOp {
    Link { path: String, ino: u64 },
    Unlink { path: String },
}

impl NameOp {
    fn path(&self) -> &str {
        match self {
            NameOp::Link { path, .. } | NameOp::Unlink { path } => path,
        }
    }
}

fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => write_into(buf, *offset, data),
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

/// An in-memory disk with injectable faults. See the module doc for the model.
#[derive(Clone, Debug)]
pub struct MemDisk {
    rng: ChaCha8Rng,
    faults: FaultConfig,
    next_ino: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    name_ops: Vec<NameOp>,
    dirs: std::collections::BTreeSet<String>,
}

impl MemDisk {
    /// A disk whose random choices all come from `seed`.
    pub fn new(seed: u64, faults: FaultConfig) -> Self {
        MemDisk {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            next_ino: 1,
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            name_ops: Vec::new(),
            dirs: [String::new()].into_iter().collect(),
        }
    }

    pub fn faults_mut(&mut self) -> &mut FaultConfig {
        &mut self.faults
    }

    /// Power loss: the process view becomes what was durable (plus, with `torn_writes`, a
    /// random prefix of what was in flight).
    pub fn crash(&mut self) {
        if self.faults.torn_writes {
            let keep = self.rng.random_range(0..=self.name_ops.len());
            for op in self.name_ops.drain(..keep).collect::<Vec<_>>() {
                Self::apply_name_op(&mut self.durable_names, op);
            }
        }
        self.name_ops.clear();
        self.names = self.durable_names.clone();
        let torn = self.faults.torn_writes;
        let block = self.faults.tear_block.max(1);
        for inode in self.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            if torn && !pending.is_empty() {
                let keep = self.rng.random_range(0..=pending.len());
                for op in &pending[..keep] {
                    apply(&mut inode.synced, op);
                }
                if let Some(Pending::Write { offset, data }) = pending.get(keep) {
                    // Whole blocks reach the platter; a block cut mid-way does not.
                    let end = offset + data.len() as u64;
                    let first_boundary = (offset / block + 1) * block;
                    let boundaries: Vec<u64> = (0..)
                        .map(|i| first_boundary + i * block)
                        .take_while(|b| *b < end)
                        .collect();
                    let choice = self.rng.random_range(0..=boundaries.len());
                    if choice > 0 {
                        let cut = (boundaries[choice - 1] - offset) as usize;
                        write_into(&mut inode.synced, *offset, &data[..cut]);
                    }
                }
            }
            inode.data = inode.synced.clone();
        }
        self.collect_garbage();
    }

    /// Flips one bit of the file, in what the process sees and in what is durable: corruption
    /// at rest.
    pub fn flip_bit(&mut self, path: &str, bit: u64) -> Result<(), DiskError> {
        let ino = self.ino(path)?;
        let inode = self.inodes.get_mut(&ino).ok_or_else(|| DiskError::NotFound(path.into()))?;
        let (byte, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
        for buf in [&mut inode.data, &mut inode.synced] {
            if let Some(b) = buf.get_mut(byte) {
                *b ^= mask;
            }
        }
        Ok(())
    }

    /// Flips a random bit among the file's durable bytes; returns which bit, or `None` if the
    /// file has no durable byte.
    pub fn flip_random_bit(&mut self, path: &str) -> Result<Option<u64>, DiskError> {
        let ino = self.ino(path)?;
        let len = self.inodes.get(&ino).map_or(0, |i| i.synced.len().min(i.data.len())) as u64;
        if len == 0 {
            return Ok(None);
        }
        let bit = self.rng.random_range(0..len * 8);
        self.flip_bit(path, bit)?;
        Ok(Some(bit))
    }

    /// Every file path the process sees, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// The seeded generator, for callers that pick fault targets.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    fn ino(&self, path: &str) -> Result<u64, DiskError> {
        self.names.get(path).copied().ok_or_else(|| DiskError::NotFound(path.to_string()))
    }

    fn inode_mut(&mut self, path: &str) -> Result<&mut Inode, DiskError> {
        let ino = self.ino(path)?;
        self.inodes.get_mut(&ino).ok_or_else(|| DiskError::NotFound(path.to_string()))
    }

    fn apply_name_op(names: &mut BTreeMap<String, u64>, op: NameOp) {
        match op {
            NameOp::Link { path, ino } => {
                names.insert(path, ino);
            }
            NameOp::Unlink { path } => {
                names.remove(&path);
            }
        }
    }

    fn link(&mut self, path: &str, ino: u64) {
        self.names.insert(path.to_string(), ino);
        self.name_ops.push(NameOp::Link { path: path.to_string(), ino });
    }

    fn unlink(&mut self, path: &str) {
        self.names.remove(path);
        self.name_ops.push(NameOp::Unlink { path: path.to_string() });
    }

    /// Drops inodes that no name, present or durable or pending, refers to.
    fn collect_garbage(&mut self) {
        let live: std::collections::BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .chain(self.name_ops.iter().filter_map(|op| match op {
                NameOp::Link { ino, .. } => Some(*ino),
                NameOp::Unlink { .. } => None,
            }))
            .collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len().max(i.synced.len()) as u64).sum()
    }

    /// Refuses a write that would grow the disk past its capacity.
    fn reserve(&self, path: &str, new_end: u64) -> Result<(), DiskError> {
        let Some(capacity) = self.faults.capacity else { return Ok(()) };
        let current =
            self.ino(path).ok().and_then(|i| self.inodes.get(&i)).map_or(0, |i| i.data.len());
        let growth = new_end.saturating_sub(current as u64);
        if growth > 0 && self.used() + growth > capacity {
            return Err(DiskError::NoSpace);
        }
        Ok(())
    }

    fn check_dir(&self, path: &str) -> Result<(), DiskError> {
        if self.dirs.contains(parent(path)) {
            Ok(())
        } else {
            Err(DiskError::NotFound(parent(path).to_string()))
        }
    }
}

impl Disk for MemDisk {
    fn create(&mut self, path: &str) -> Result<(), DiskError> {
        check_path(path)?;
        self.check_dir(path)?;
        // A fresh inode, as O_TRUNC on a new file would give; an existing name is re-pointed,
        // which keeps the old bytes reachable from the durable namespace until `sync_dir`.
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        if self.names.contains_key(path) {
            self.unlink(path);
        }
        self.link(path, ino);
        Ok(())
    }

    fn exists(&mut self, path: &str) -> Result<bool, DiskError> {
        check_path(path)?;
        Ok(self.names.contains_key(path))
    }

    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        check_path(path)?;
        let ino = self.ino(path)?;
        Ok(self.inodes.get(&ino).map_or(0, |i| i.data.len() as u64))
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        check_path(path)?;
        let per_million = self.faults.read_error_per_million;
        if per_million > 0 && self.rng.random_range(0..1_000_000) < per_million {
            return Err(DiskError::Io {
                op: "read",
                path: path.to_string(),
                detail: "injected read error".into(),
            });
        }
        let inode = self.inode_mut(path)?;
        let start = (offset as usize).min(inode.data.len());
        let n = buf.len().min(inode.data.len() - start);
        buf[..n].copy_from_slice(&inode.data[start..start + n]);
        Ok(n)
    }

    fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        check_path(path)?;
        self.reserve(path, offset + data.len() as u64)?;
        let inode = self.inode_mut(path)?;
        let op = Pending::Write { offset, data: data.to_vec() };
        apply(&mut inode.data, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<u64, DiskError> {
        check_path(path)?;
        let offset = self.len(path)?;
        self.write_at(path, offset, data)?;
        Ok(offset)
    }

    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        check_path(path)?;
        let inode = self.inode_mut(path)?;
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.synced, &op);
        }
        Ok(())
    }

    fn truncate(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        check_path(path)?;
        self.reserve(path, len)?;
        let inode = self.inode_mut(path)?;
        let op = Pending::SetLen(len);
        apply(&mut inode.data, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        check_path(from)?;
        check_path(to)?;
        self.check_dir(to)?;
        let ino = self.ino(from)?;
        self.unlink(from);
        self.link(to, ino);
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        check_path(path)?;
        self.ino(path)?;
        self.unlink(path);
        self.collect_garbage();
        Ok(())
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, DiskError> {
        if !self.dirs.contains(dir) {
            return Err(DiskError::NotFound(dir.to_string()));
        }
        Ok(self
            .names
            .keys()
            .filter(|p| parent(p) == dir)
            .map(|p| p.rsplit_once('/').map_or(p.as_str(), |(_, n)| n).to_string())
            .collect())
    }

    fn sync_dir(&mut self, dir: &str) -> Result<(), DiskError> {
        if !self.dirs.contains(dir) {
            return Err(DiskError::NotFound(dir.to_string()));
        }
        let (mine, rest): (Vec<NameOp>, Vec<NameOp>) =
            std::mem::take(&mut self.name_ops).into_iter().partition(|op| parent(op.path()) == dir);
        self.name_ops = rest;
        for op in mine {
            Self::apply_name_op(&mut self.durable_names, op);
        }
        self.collect_garbage();
        Ok(())
    }

    fn create_dir_all(&mut self, dir: &str) -> Result<(), DiskError> {
        check_path(dir)?;
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> MemDisk {
        let mut d = MemDisk::new(7, FaultConfig::default());
        d.create_dir_all("s").unwrap();
        d
    }

    #[test]
    fn unsynced_data_is_lost_synced_data_survives() {
        let mut d = disk();
        d.create("s/a").unwrap();
        d.sync_dir("s").unwrap();
        d.append("s/a", b"hello").unwrap();
        d.sync("s/a").unwrap();
        d.append("s/a", b" world").unwrap();
        assert_eq!(d.read_all("s/a").unwrap(), b"hello world");
        d.crash();
        assert_eq!(d.read_all("s/a").unwrap(), b"hello");
    }

    #[test]
    fn a_name_without_sync_dir_is_lost() {
        let mut d = disk();
        d.create("s/a").unwrap();
        d.append("s/a", b"x").unwrap();
        d.sync("s/a").unwrap();
        d.crash();
        assert!(!d.exists("s/a").unwrap());
    }

    #[test]
    fn rename_without_sync_dir_reverts_to_the_old_file() {
        let mut d = disk();
        d.replace_atomically("s/cp", b"old").unwrap();
        d.create("s/cp.tmp").unwrap();
        d.append("s/cp.tmp", b"new").unwrap();
        d.sync("s/cp.tmp").unwrap();
        d.rename("s/cp.tmp", "s/cp").unwrap();
        assert_eq!(d.read_all("s/cp").unwrap(), b"new");
        d.crash();
        assert_eq!(d.read_all("s/cp").unwrap(), b"old");
        d.replace_atomically("s/cp", b"new").unwrap();
        d.crash();
        assert_eq!(d.read_all("s/cp").unwrap(), b"new");
    }

    #[test]
    fn torn_writes_keep_a_block_aligned_prefix() {
        for seed in 0..50 {
            let mut d = MemDisk::new(
                seed,
                FaultConfig { torn_writes: true, tear_block: 4, ..Default::default() },
            );
            d.create_dir_all("s").unwrap();
            d.create("s/a").unwrap();
            d.sync_dir("s").unwrap();
            d.append("s/a", b"0123").unwrap();
            d.sync("s/a").unwrap();
            d.append("s/a", b"456789abcdef").unwrap();
            d.crash();
            let got = d.read_all("s/a").unwrap();
            assert!(got.len().is_multiple_of(4) && got.len() >= 4, "{got:?}");
            assert_eq!(&b"0123456789abcdef"[..got.len()], &got[..]);
        }
    }

    #[test]
    fn bit_flips_hit_durable_bytes_and_full_disk_refuses_writes() {
        let mut d = disk();
        d.create("s/a").unwrap();
        d.sync_dir("s").unwrap();
        d.append("s/a", &[0u8; 4]).unwrap();
        d.sync("s/a").unwrap();
        d.flip_bit("s/a", 9).unwrap();
        d.crash();
        assert_eq!(d.read_all("s/a").unwrap(), [0, 2, 0, 0]);
        d.faults_mut().capacity = Some(6);
        assert_eq!(d.append("s/a", b"abc"), Err(DiskError::NoSpace));
        assert_eq!(d.len("s/a").unwrap(), 4);
        d.append("s/a", b"ab").unwrap();
    }

    #[test]
    fn injected_read_errors_are_errors() {
        let mut d = disk();
        d.create("s/a").unwrap();
        d.faults_mut().read_error_per_million = 1_000_000;
        assert!(matches!(d.read_at("s/a", 0, &mut [0; 1]), Err(DiskError::Io { .. })));
    }
}
