//! Durable Raft state through the `Disk` trait: a write-ahead log of checksummed records and
//! the term/vote metadata in two redundant checksummed copies.
//!
//! WAL record (little endian):
//! ```text
//! body_len u32 | kind u8 | index u64 | term u64 | body_crc u32 | header_crc u32 | body
//! ```
//! The header has its own CRC-32C so that, when only the body is corrupt, the entry's
//! identity `(index, term)` is still trusted: recovery keeps it as *faulty* instead of
//! truncating it (a truncation could erase an entry this node acknowledged and that was
//! committed counting that acknowledgement). Records are only appended; a record for index
//! `i` replaces the entry at `i` and everything after it, which is how a follower's
//! truncation of a conflicting suffix reaches the disk without rewriting in place.
//!
//! Recovery reads the WAL once: a record cut short at the end of the file is a torn write that
//! was never synced and so never acknowledged, and is dropped; a body that fails its checksum
//! becomes a faulty entry; a header that fails its checksum loses framing for the rest of the
//! file, so the node marks itself `LOST_SUFFIX`: it may have acknowledged entries it can no
//! longer name, and it refuses to vote or campaign until a leader has brought it level again.
//! Recovery then rewrites the WAL (temp file, sync, rename, sync_dir) holding exactly the
//! recovered log, faulty entries as identity-only records, so later appends frame cleanly.
//!
//! Snapshot (`snap`), replaced whole (temp file, sync, rename, sync_dir):
//! ```text
//! index u64 | term u64 | voter_count u32 | voters u64 * count | data_len u32 | data
//! | crc u32 (over everything before it)
//! ```
//! Compaction is crash-safe by order: the snapshot file is durable before the WAL in front of
//! it is rewritten without the entries it covers. A crash between the two leaves a WAL that
//! still starts below the snapshot; recovery drops what the snapshot covers (and, if the
//! WAL's entry at the snapshot's index has another term, the snapshot came from a leader that
//! overruled that suffix, so the whole WAL goes, as the node had decided before the crash).
//! A snapshot that fails its checksum takes the committed prefix with it: the node keeps only
//! a WAL that starts at index 1 and fences itself as for a lost suffix until a leader has
//! brought it level (it gets a snapshot again, as any follower behind the leader's log does).
//!
//! Metadata copy (`meta.a`, `meta.b`, 29 bytes each):
//! ```text
//! version u64 | term u64 | vote u64 (0 = none, else id + 1) | fence u8 | crc u32
//! ```
//! Written one after the other, each synced before the next is touched, so a crash or a torn
//! write damages at most the copy being written and the other still holds a state that was
//! durable. If neither copy checks out the node no longer knows whom it voted for: it sets
//! `LOST_META` and never votes again (an operator must replace it).

use super::message::{Entry, EntryKind, NodeId, Snapshot};
use crate::disk::{join, Disk, DiskError};

const HEADER_LEN: usize = 29;
const META_LEN: usize = 29;
/// A body larger than this is taken as a corrupt header rather than allocated.
const MAX_BODY: u32 = 64 << 20;

const KIND_NOOP: u8 = 1;
const KIND_NORMAL: u8 = 2;
/// An entry whose body was lost to corruption: identity only, no data.
const KIND_FAULTY: u8 = 3;
const KIND_CONFIG: u8 = 4;

/// The node lost part of its log's tail to corruption (see the module doc).
pub const LOST_SUFFIX: u8 = 1;
/// The node lost its term/vote metadata.
pub const LOST_META: u8 = 2;

/// Term, vote and fences: what must be durable before the node acts on it (Figure 2,
/// "persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    /// `LOST_SUFFIX | LOST_META`: reasons this node must not vote or campaign.
    pub fence: u8,
}

#[derive(Clone, Debug)]
pub enum StorageError {
    Disk(DiskError),
}

impl From<DiskError> for StorageError {
    fn from(e: DiskError) -> Self {
        StorageError::Disk(e)
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Disk(e) => write!(f, "raft storage: {e}"),
        }
    }
}

/// What recovery found, for the node and for the simulator's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes of a torn, never-synced tail that were dropped.
    pub torn_bytes: u64,
    /// Indexes kept as faulty (identity known, body corrupt).
    pub faulty: Vec<u64>,
    /// A record header failed its checksum: the rest of the WAL is unknown.
    pub lost_suffix: bool,
    /// Metadata copies that failed their checksum.
    pub bad_meta_copies: u8,
    /// The snapshot file failed its checksum (the committed prefix it held is gone here).
    pub bad_snapshot: bool,
    /// WAL entries dropped because the snapshot covers them (a crash came between writing the
    /// snapshot and rewriting the WAL) or because they could not be placed after it.
    pub covered_entries: u64,
}

/// The state a node restarts from.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The newest durable snapshot; `entries` follow it.
    pub snapshot: Option<Snapshot>,
    /// Faulty entries are here too, with empty data; `report.faulty` names them.
    pub entries: Vec<Entry>,
    pub report: RecoveryReport,
}

/// The files of one Raft group in one directory.
#[derive(Clone, Debug)]
pub struct Storage {
    wal: String,
    snap: String,
    /// The durable snapshot's identity, (0, 0) without one.
    base: (u64, u64),
    meta: [String; 2],
    meta_version: u64,
    /// WAL bytes written since the last sync.
    dirty: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Appends one WAL record for `e`; `faulty` writes its identity without data.
pub fn encode_entry(e: &Entry, faulty: bool, out: &mut Vec<u8>) {
    let (kind, body): (u8, &[u8]) = if faulty {
        (KIND_FAULTY, &[])
    } else {
        match e.kind {
            EntryKind::Noop => (KIND_NOOP, &[]),
            EntryKind::Normal => (KIND_NORMAL, &e.data),
            EntryKind::Config => (KIND_CONFIG, &e.data),
            EntryKind::Faulty => (KIND_FAULTY, &[]),
        }
    };
    let start = out.len();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&e.index.to_le_bytes());
    out.extend_from_slice(&e.term.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let header_crc = crc32c::crc32c(&out[start..start + 25]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(body);
}

/// One WAL record as recovery sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An entry and whether its body was lost; the record's length.
    Entry { entry: Entry, faulty: bool, len: usize },
    /// The file ends inside the record.
    Incomplete,
    /// The header fails its checksum or is absurd.
    BadHeader,
}

pub fn decode_entry(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    if crc32c::crc32c(&buf[..25]) != u32_at(buf, 25) {
        return Decoded::BadHeader;
    }
    let body_len = u32_at(buf, 0);
    let kind = buf[4];
    if body_len > MAX_BODY || !(KIND_NOOP..=KIND_CONFIG).contains(&kind) {
        return Decoded::BadHeader;
    }
    let (index, term) = (u64_at(buf, 5), u64_at(buf, 13));
    let len = HEADER_LEN + body_len as usize;
    let Some(body) = buf.get(HEADER_LEN..len) else { return Decoded::Incomplete };
    let body_ok = crc32c::crc32c(body) == u32_at(buf, 21);
    let faulty = kind == KIND_FAULTY || !body_ok;
    let entry = Entry {
        index,
        term,
        kind: match kind {
            _ if faulty => EntryKind::Faulty,
            KIND_NOOP => EntryKind::Noop,
            KIND_CONFIG => EntryKind::Config,
            _ => EntryKind::Normal,
        },
        data: if faulty { Vec::new() } else { body.to_vec() },
    };
    Decoded::Entry { entry, faulty, len }
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut b = Vec::with_capacity(28 + 8 * s.voters.len() + s.data.len());
    b.extend_from_slice(&s.index.to_le_bytes());
    b.extend_from_slice(&s.term.to_le_bytes());
    b.extend_from_slice(&(s.voters.len() as u32).to_le_bytes());
    for v in &s.voters {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(s.data.len() as u32).to_le_bytes());
    b.extend_from_slice(&s.data);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_snapshot(b: &[u8]) -> Option<Snapshot> {
    if b.len() < 28 {
        return None;
    }
    let body = &b[..b.len() - 4];
    if crc32c::crc32c(body) != u32_at(b, b.len() - 4) {
        return None;
    }
    let count = u32_at(b, 16) as usize;
    let data_at = 20usize.checked_add(count.checked_mul(8)?)?;
    let len = u32_at(body.get(..data_at + 4)?, data_at) as usize;
    if data_at + 4 + len != body.len() {
        return None;
    }
    let voters = (0..count).map(|k| u64_at(b, 20 + 8 * k)).collect();
    let data = body[data_at + 4..].to_vec();
    Some(Snapshot { index: u64_at(b, 0), term: u64_at(b, 8), voters, data })
}

/// The WAL replayed with "a record at index i replaces i and everything after".
#[derive(Debug, Default)]
struct Replayed {
    /// Consecutive entries, from the first record's index on.
    entries: Vec<Entry>,
    faulty: Vec<u64>,
    torn_bytes: u64,
    lost_suffix: bool,
}

impl Replayed {
    fn first(&self) -> u64 {
        self.entries.first().map_or(0, |e| e.index)
    }

    fn term(&self, index: u64) -> Option<u64> {
        let i = usize::try_from(index.checked_sub(self.first())?).ok()?;
        self.entries.get(i).map(|e| e.term)
    }

    /// Keeps the entries after a snapshot through `(index, term)`: all of them if the WAL
    /// holds that entry or starts right after it, none if it holds another entry there (the
    /// snapshot overruled it) or starts later (there is a gap it cannot fill). Returns how
    /// many entries were dropped.
    fn rebase(&mut self, index: u64, term: u64) -> u64 {
        let before = self.entries.len() as u64;
        if self.entries.is_empty() || self.first() == index + 1 {
            return 0;
        }
        if self.first() <= index && self.term(index) == Some(term) {
            self.entries.drain(..(index + 1 - self.first()) as usize);
        } else {
            self.entries.clear();
        }
        self.faulty.retain(|&f| f > index);
        before - self.entries.len() as u64
    }
}

fn replay(bytes: &[u8]) -> Replayed {
    let mut r = Replayed::default();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_entry(&bytes[pos..]) {
            Decoded::Entry { entry, faulty: bad, len } => {
                let i = entry.index;
                let first = if r.entries.is_empty() { i } else { r.first() };
                let end = first + r.entries.len() as u64;
                if i == 0 || i < first || i > end {
                    // A sound record that cannot follow: framing is not to be trusted.
                    r.lost_suffix = true;
                    break;
                }
                r.entries.truncate((i - first) as usize);
                r.faulty.retain(|&f| f < i);
                if bad {
                    r.faulty.push(i);
                }
                r.entries.push(entry);
                pos += len;
            }
            Decoded::Incomplete => {
                r.torn_bytes = (bytes.len() - pos) as u64;
                break;
            }
            Decoded::BadHeader => {
                r.lost_suffix = true;
                break;
            }
        }
    }
    r
}

/// The WAL image of `entries`, faulty ones as identity-only records.
fn encode_wal(entries: &[Entry], faulty: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        encode_entry(e, faulty.contains(&e.index), &mut out);
    }
    out
}

fn encode_meta(version: u64, hs: &HardState) -> [u8; META_LEN] {
    let mut b = [0u8; META_LEN];
    b[0..8].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(&hs.term.to_le_bytes());
    let vote = hs.vote.map_or(0, |v| v.wrapping_add(1));
    b[16..24].copy_from_slice(&vote.to_le_bytes());
    b[24] = hs.fence;
    let crc = crc32c::crc32c(&b[..25]);
    b[25..29].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_meta(b: &[u8]) -> Option<(u64, HardState)> {
    if b.len() != META_LEN || crc32c::crc32c(&b[..25]) != u32_at(b, 25) {
        return None;
    }
    let vote = u64_at(b, 16);
    Some((u64_at(b, 0), HardState { term: u64_at(b, 8), vote: vote.checked_sub(1), fence: b[24] }))
}

/// Test-only mutations of what storage does, for the simulator's canaries. Never set outside
/// tests: each one breaks a durability rule on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageMutations {
    /// On recovery, forget whom this node voted for (keep the term).
    pub forget_vote: bool,
    /// On recovery, cut the log at the first entry whose body fails its checksum, as if it
    /// were a torn tail, instead of keeping it faulty (DESIGN.md §6.3's rule broken: the
    /// entry may have been acknowledged and committed counting that acknowledgement).
    pub truncate_corrupt: bool,
}

impl Storage {
    /// Opens (creating if needed) the group's files in `dir` and recovers its state.
    pub fn open<D: Disk>(
        disk: &mut D,
        dir: &str,
        mutations: StorageMutations,
    ) -> Result<(Storage, Recovered), StorageError> {
        disk.create_dir_all(dir)?;
        let mut s = Storage {
            wal: join(dir, "wal"),
            snap: join(dir, "snap"),
            base: (0, 0),
            meta: [join(dir, "meta.a"), join(dir, "meta.b")],
            meta_version: 0,
            dirty: false,
        };
        let mut report = RecoveryReport::default();

        // Metadata: the newest copy that checks out.
        let mut best: Option<(u64, HardState)> = None;
        let mut any_meta_bytes = false;
        for path in &s.meta {
            if !disk.exists(path)? {
                continue;
            }
            let bytes = disk.read_all(path)?;
            if bytes.is_empty() {
                continue;
            }
            any_meta_bytes = true;
            match decode_meta(&bytes) {
                Some(m) if best.is_none_or(|b| m.0 > b.0) => best = Some(m),
                Some(_) => {}
                None => report.bad_meta_copies += 1,
            }
        }
        let mut hs = best.map(|b| b.1).unwrap_or_default();
        s.meta_version = best.map_or(0, |b| b.0);

        // The snapshot, if any, then the WAL replayed and placed after it.
        let mut snapshot = None;
        if disk.exists(&s.snap)? {
            match decode_snapshot(&disk.read_all(&s.snap)?) {
                Some(snap) => snapshot = Some(snap),
                None => report.bad_snapshot = true,
            }
        }
        let bytes = if disk.exists(&s.wal)? { disk.read_all(&s.wal)? } else { Vec::new() };
        let mut wal = replay(&bytes);
        report.torn_bytes = wal.torn_bytes;
        report.lost_suffix = wal.lost_suffix;
        match &snapshot {
            Some(snap) => {
                report.covered_entries = wal.rebase(snap.index, snap.term);
                s.base = (snap.index, snap.term);
            }
            None if wal.first() > 1 => {
                // The log was compacted and its snapshot is unreadable (or, never in a
                // correct run, gone): the entries cannot be placed. The node lost what it
                // acknowledged; a leader sends it everything again.
                report.covered_entries = wal.entries.len() as u64;
                wal.entries.clear();
                wal.faulty.clear();
                report.lost_suffix = true;
            }
            None => {}
        }
        if report.bad_snapshot {
            report.lost_suffix = true;
        }
        let Replayed { mut entries, mut faulty, .. } = wal;
        if mutations.truncate_corrupt {
            if let Some(&first) = faulty.first() {
                entries.retain(|e| e.index < first);
                faulty.clear();
            }
        }
        report.faulty = faulty.clone();

        if best.is_none() && (any_meta_bytes || !entries.is_empty() || snapshot.is_some()) {
            // Entries are only ever written after the term that carried them was synced, so
            // a log without readable metadata means the metadata was destroyed.
            hs.fence |= LOST_META;
            hs.term = entries.last().map_or(s.base.1, |e| e.term);
            hs.vote = None;
        }
        if report.lost_suffix {
            hs.fence |= LOST_SUFFIX;
        }
        if mutations.forget_vote {
            hs.vote = None;
        }

        // Rewrite the WAL as exactly what was recovered, so appends after it frame cleanly.
        let out = encode_wal(&entries, &faulty);
        if out != bytes || !disk.exists(&s.wal)? {
            disk.replace_atomically(&s.wal, &out)?;
        }
        if report.bad_snapshot {
            // Its content is gone either way; removing it keeps the next recovery from
            // fencing the node again after a leader has restored it.
            disk.remove(&s.snap)?;
            disk.sync_dir(dir)?;
        }
        // Both copies rewritten: repairs a damaged one and records any new fence durably.
        if best.map(|b| b.1) != Some(hs) || report.bad_meta_copies > 0 {
            s.write_hard_state(disk, &hs)?;
        } else {
            for path in &s.meta {
                if !disk.exists(path)? {
                    s.write_hard_state(disk, &hs)?;
                    break;
                }
            }
        }
        Ok((s, Recovered { hard_state: hs, snapshot, entries, report }))
    }

    /// Prepares a blank disk to bring back a node whose disk was lost (the operator's step;
    /// plain Raft cannot take a blank voter back, see DESIGN.md §6.3): its metadata says
    /// `LOST_META` (it never votes or campaigns again, but replicates) at `cluster_term`.
    ///
    /// `cluster_term` must be at least the highest term any entry this node ever acknowledged
    /// was sent in; the current term of a majority of the group's nodes is (a leader of term
    /// `t` was elected by a majority in `t`). Lower, a deposed leader of an older term that
    /// reaches the node first finds a willing follower with an empty log, and its
    /// acknowledgement counts toward a majority for an entry the newer terms already replaced.
    pub fn init_replacement<D: Disk>(
        disk: &mut D,
        dir: &str,
        cluster_term: u64,
    ) -> Result<(), StorageError> {
        let (mut storage, _) = Storage::open(disk, dir, StorageMutations::default())?;
        let fenced = HardState { term: cluster_term, vote: None, fence: LOST_META };
        storage.write_hard_state(disk, &fenced)
    }

    /// Writes both metadata copies, each synced before the next is touched.
    pub fn write_hard_state<D: Disk>(
        &mut self,
        disk: &mut D,
        hs: &HardState,
    ) -> Result<(), StorageError> {
        self.meta_version += 1;
        let bytes = encode_meta(self.meta_version, hs);
        let dir = crate::disk::parent(&self.wal).to_string();
        for path in &self.meta {
            if !disk.exists(path)? {
                disk.create(path)?;
                disk.sync_dir(&dir)?;
            }
            disk.write_at(path, 0, &bytes)?;
            disk.sync(path)?;
        }
        Ok(())
    }

    /// Appends entries to the WAL without syncing (group commit: many writes, one sync).
    pub fn append<D: Disk>(&mut self, disk: &mut D, entries: &[Entry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for e in entries {
            encode_entry(e, false, &mut out);
        }
        disk.append(&self.wal, &out)?;
        self.dirty = true;
        Ok(())
    }

    /// Makes every appended entry durable.
    pub fn sync<D: Disk>(&mut self, disk: &mut D) -> Result<(), StorageError> {
        if self.dirty {
            disk.sync(&self.wal)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Makes `snap` the durable snapshot and drops the WAL entries it covers, in that order
    /// (see the module doc). `keep_log`: the node kept its entries after the snapshot
    /// (`Ready::snapshot_keeps_log`); they stay in the WAL only if the WAL agrees that they
    /// follow the snapshot's entry, otherwise the WAL is emptied and the node's next entries
    /// are written after the snapshot. Used for local compaction (`keep_log` true) and for a
    /// snapshot received from a leader.
    pub fn install_snapshot<D: Disk>(
        &mut self,
        disk: &mut D,
        snap: &Snapshot,
        keep_log: bool,
    ) -> Result<(), StorageError> {
        disk.replace_atomically(&self.snap, &encode_snapshot(snap))?;
        let bytes = if disk.exists(&self.wal)? { disk.read_all(&self.wal)? } else { Vec::new() };
        let mut wal = replay(&bytes);
        let base_matches = self.base == (snap.index, snap.term);
        if keep_log && (wal.term(snap.index) == Some(snap.term) || base_matches) {
            wal.rebase(snap.index, snap.term);
        } else {
            wal.entries.clear();
            wal.faulty.clear();
        }
        // A live WAL replays cleanly (torn tails and bad headers come from crashes and are
        // cut at recovery); whatever the replay could read is what the node wrote.
        disk.replace_atomically(&self.wal, &encode_wal(&wal.entries, &wal.faulty))?;
        self.base = (snap.index, snap.term);
        self.dirty = false;
        Ok(())
    }

    /// The snapshot file's path, for fault injection.
    pub fn snapshot_path(&self) -> &str {
        &self.snap
    }

    /// The WAL's path, for fault injection.
    pub fn wal_path(&self) -> &str {
        &self.wal
    }

    /// The metadata copies' paths, for fault injection.
    pub fn meta_paths(&self) -> &[String; 2] {
        &self.meta
    }
}
