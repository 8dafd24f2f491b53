//! `FileLog`: records appended to numbered block files through a `Disk`, and the recovery
//! that rebuilds an engine from them.
//!
//! Layout under `dir`: `NNNNNNNNNN.blk` block files (see `record.rs` for the record format)
//! and `index.ckp`, the checkpoint (see `checkpoint.rs`). Every block begins with a `Base`
//! record, so the oldest blocks can be deleted once nothing in them is live.
//!
//! Durability rules, and why:
//! - `sync` syncs every block written since the last one, then the directory if a block was
//!   created: nothing is acknowledged before both.
//! - A block is synced when it is sealed (a new one started), so after a crash only the last
//!   block can end in a torn record; a bad record anywhere else is corruption.
//! - Recovery truncates a torn tail (an incomplete record, or zeros, at the end of the last
//!   block: a write that never completed, so never acknowledged). A record whose checksum fails
//!   with its full length present is corruption: it is reported with its sequences, never
//!   served and never truncated away, and new records go to a fresh block after it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::checkpoint::{self, Checkpoint};
use super::crypt::{self, BlockKey, Crypt, Encryption, KeyFileError};
use super::engine::{Base, Engine, Log};
use super::index::{Entry, Index};
use super::record::{self, Body, Kind, RecordError, HEADER_LEN};
use super::{Limits, StoreError, StoredMsg};
use crate::disk::{join, Disk, DiskError};

const CHECKPOINT: &str = "index.ckp";
/// Written when an encrypted store is first opened: see `Crypt::key_check`.
const KEY_CHECK: &str = "key.chk";

/// A sealed block compressed with snappy: `"FJSZ" | plain_len u64 | crc32c u32 of the
/// compressed bytes | snappy raw bytes`. A plain block starts with its `Base` record, whose
/// first four bytes (a body length of 16) can never read as this magic.
const SZ_MAGIC: &[u8; 4] = b"FJSZ";
const SZ_HEADER: usize = 16;

/// The plain bytes of a block file's contents: itself if plain, decompressed if compressed,
/// `None` if compressed and damaged (its checksum or its snappy stream fails).
pub fn plain_block(file: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if file.get(..4) != Some(&SZ_MAGIC[..]) {
        return Some(std::borrow::Cow::Borrowed(file));
    }
    let header = file.get(..SZ_HEADER)?;
    let plain_len = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let crc = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let packed = &file[SZ_HEADER..];
    if crc32c::crc32c(packed) != crc {
        return None;
    }
    // The length is checked against snappy's own before anything is allocated for it.
    let declared = snap::raw::decompress_len(packed).ok()?;
    if declared as u64 != plain_len || plain_len > u64::from(u32::MAX) {
        return None;
    }
    snap::raw::Decoder::new().decompress_vec(packed).ok().map(std::borrow::Cow::Owned)
}

/// Test-only mutations that break durability on purpose, so the tests can prove they notice.
#[cfg(any(test, feature = "canaries"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Canaries {
    /// `flush` reports durability without syncing.
    pub ack_before_sync: bool,
    /// Reads and recovery accept records whose body checksum fails.
    pub skip_checksum: bool,
}

#[derive(Clone, Debug)]
pub struct FileStoreConfig {
    /// Directory of the store, relative to the disk's root.
    pub dir: String,
    /// A block is sealed once the next record would take it past this many bytes.
    pub block_size: u64,
    /// Write a checkpoint every this many flushes (0 = only on `checkpoint()`).
    pub checkpoint_every: u64,
    /// Bytes of sealed blocks kept in memory for loads (least recently used evicted). The
    /// index holds only metadata, so this bounds what a store keeps of its payloads however
    /// large the stream grows; 0 reads every load from the disk.
    pub cache_bytes: u64,
    /// Compress each block with snappy when it is sealed (replacing it atomically). Loads from
    /// a compressed block decompress it whole, through the cache.
    pub compress: bool,
    /// Encrypt records at rest (see `crypt.rs`). With `compress` too, each record's body is
    /// compressed before it is sealed instead of whole blocks after.
    pub encryption: Option<Encryption>,
    #[cfg(any(test, feature = "canaries"))]
    pub canaries: Canaries,
}

impl FileStoreConfig {
    pub fn new(dir: impl Into<String>) -> Self {
        FileStoreConfig {
            dir: dir.into(),
            block_size: 8 << 20,
            checkpoint_every: 1024,
            cache_bytes: 32 << 20,
            compress: false,
            encryption: None,
            #[cfg(any(test, feature = "canaries"))]
            canaries: Canaries::default(),
        }
    }

    fn ack_before_sync(&self) -> bool {
        #[cfg(any(test, feature = "canaries"))]
        return self.canaries.ack_before_sync;
        #[cfg(not(any(test, feature = "canaries")))]
        false
    }

    fn verify(&self) -> bool {
        #[cfg(any(test, feature = "canaries"))]
        return !self.canaries.skip_checksum;
        #[cfg(not(any(test, feature = "canaries")))]
        true
    }
}

/// Where a message's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLoc {
    pub block: u32,
    pub offset: u64,
    pub len: u32,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The checkpoint was valid and only the records after it were replayed.
    pub used_checkpoint: bool,
    /// Why the checkpoint was not used, if one existed.
    pub checkpoint_rejected: Option<String>,
    /// Bytes of torn tail cut from the last block.
    pub torn_bytes: u64,
    /// Damaged sequence ranges (`None` end: unknown).
    pub corrupt: Vec<(u64, Option<u64>)>,
    /// Records replayed from blocks.
    pub records_replayed: u64,
}

pub struct FileLog<D> {
    disk: D,
    config: FileStoreConfig,
    /// Every block and its length.
    blocks: BTreeMap<u32, u64>,
    dirty: BTreeSet<u32>,
    dir_dirty: bool,
    /// Start a new block before the next append (the tail holds damage we must not bury).
    roll_next: bool,
    /// Block, offset and header checksum of the last record appended.
    last_record: (u32, u64, u32),
    /// Block and sequence of the previous load: a load a little after it in the same block
    /// is a run (see `read`).
    last_read: Option<(u32, u64)>,
    flushes_since_checkpoint: u64,
    force_checkpoint: bool,
    /// Corruption was found: keep doing full scans so it stays reported.
    damaged: bool,
    buf: Vec<u8>,
    cache: BlockCache,
    /// Blocks whose file is compressed (`blocks` keeps their plain length).
    compressed: BTreeSet<u32>,
    /// The store key and CSPRNG, when encryption is on.
    crypt: Option<Crypt>,
    /// Encrypted blocks' keys; a block without one is plain.
    keys: BTreeMap<u32, BlockKey>,
    /// Encrypted blocks whose key file is damaged: nothing in them can be read.
    unreadable: BTreeSet<u32>,
}

/// Sealed blocks' bytes, least recently used evicted once over budget. Only sealed blocks are
/// cached: the tail still grows. A cached block is dropped when it is rewritten in place
/// (erase) or removed, so the cache never serves bytes the disk no longer holds; checksums are
/// verified on every read from it all the same.
#[derive(Debug, Default)]
struct BlockCache {
    budget: u64,
    used: u64,
    clock: u64,
    blocks: BTreeMap<u32, (Vec<u8>, u64)>,
    hits: u64,
    misses: u64,
}

impl BlockCache {
    fn get(&mut self, id: u32) -> Option<&[u8]> {
        self.clock += 1;
        let clock = self.clock;
        let (bytes, used_at) = self.blocks.get_mut(&id)?;
        *used_at = clock;
        self.hits += 1;
        Some(bytes)
    }

    fn insert(&mut self, id: u32, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        if len > self.budget {
            return;
        }
        while self.used + len > self.budget {
            let Some(oldest) = self.blocks.iter().min_by_key(|(_, (_, t))| *t).map(|(id, _)| *id)
            else {
                break;
            };
            self.forget(oldest);
        }
        self.clock += 1;
        self.used += len;
        self.blocks.insert(id, (bytes, self.clock));
    }

    fn forget(&mut self, id: u32) {
        if let Some((bytes, _)) = self.blocks.remove(&id) {
            self.used -= bytes.len() as u64;
        }
    }
}

impl<D> std::fmt::Debug for FileLog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.config.dir)
            .field("blocks", &self.blocks)
            .finish()
    }
}

/// Snappy's output is at most this many times its input (a 3-byte copy element yields at most
/// 64 bytes, so about 21x; a literal less than 1x).
const MAX_SNAPPY_EXPANSION: u64 = 32;

/// A load at most this many sequences after the previous one, in the same block, continues a
/// run of loads.
const RUN_STRIDE: u64 = 16;

fn block_name(id: u32) -> String {
    format!("{id:010}.blk")
}

fn parse_block_name(name: &str) -> Option<u32> {
    name.strip_suffix(".blk")?.parse().ok()
}

fn key_name(id: u32) -> String {
    format!("{id:010}.key")
}

fn parse_key_name(name: &str) -> Option<u32> {
    name.strip_suffix(".key")?.parse().ok()
}

impl<D: Disk> FileLog<D> {
    fn path(&self, block: u32) -> String {
        join(&self.config.dir, &block_name(block))
    }

    fn key_path(&self, block: u32) -> String {
        join(&self.config.dir, &key_name(block))
    }

    /// Seals the plain record in `buf` if `block` is encrypted. `compress` is off for rewrites
    /// in place, which must keep the record's exact length.
    fn seal_for(&mut self, block: u32, buf: &mut Vec<u8>, compress: bool) {
        let (Some(crypt), Some(key)) = (self.crypt.as_mut(), self.keys.get(&block)) else {
            return;
        };
        let mut sealed = Vec::with_capacity(buf.len() + crypt::OVERHEAD);
        crypt::seal_record(key, crypt.nonce(), buf, compress, &mut sealed);
        *buf = sealed;
    }

    /// Bytes sealing may add to a record appended to a new block.
    fn seal_overhead(&self) -> u64 {
        if self.crypt.is_some() {
            crypt::OVERHEAD as u64
        } else {
            0
        }
    }

    fn tail(&self) -> Option<(u32, u64)> {
        self.blocks.last_key_value().map(|(id, len)| (*id, *len))
    }

    pub fn disk(&self) -> &D {
        &self.disk
    }

    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Gives the disk back (to crash it, in tests and the simulator).
    pub fn into_disk(self) -> D {
        self.disk
    }

    /// Bytes of block data held in memory now (never above `cache_bytes`).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.used
    }

    /// Loads served from the block cache and loads that read a whole block into it.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache.hits, self.cache.misses)
    }

    /// Block ids, oldest first.
    pub fn block_ids(&self) -> Vec<u32> {
        self.blocks.keys().copied().collect()
    }

    pub fn block_path(&self, id: u32) -> String {
        self.path(id)
    }

    fn start_block(&mut self, base: Base) -> Result<(), StoreError> {
        if let Some((tail, _)) = self.tail() {
            // Seal: after this sync the old block can never end torn.
            if !self.config.ack_before_sync() {
                self.disk.sync(&self.path(tail))?;
            }
            self.dirty.remove(&tail);
            if self.config.compress {
                self.compress_block(tail);
            }
        }
        let id = self.tail().map_or(1, |(t, _)| t + 1);
        let path = self.path(id);
        if let Some(crypt) = self.crypt.as_mut() {
            // The key is durable before the block exists: no block is ever without its key.
            let (key, file) = crypt.new_block_key(id);
            self.disk.replace_atomically(&self.key_path(id), &file)?;
            self.keys.insert(id, key);
        }
        self.disk.create(&path)?;
        self.dir_dirty = true;
        self.blocks.insert(id, 0);
        let mut buf = Vec::new();
        record::encode(
            base.first_seq,
            &Body::Base { last_seq: base.last_seq, last_ts: base.last_ts },
            &mut buf,
        );
        self.seal_for(id, &mut buf, false);
        if let Err(e) = self.write_record(id, &buf) {
            // A block without its `Base` must never become the tail: the next flush deletes
            // every block before the tail, and the state they carried (the last sequence, so
            // sequences are never handed out twice) would go with them. Drop it; the old tail
            // stays the tail. If even the removal fails, recovery's scan ignores an empty block.
            self.blocks.remove(&id);
            self.dirty.remove(&id);
            let _ = self.disk.remove(&path);
            return Err(e);
        }
        self.roll_next = false;
        Ok(())
    }

    /// Replaces a sealed (synced) block with its compressed form, atomically: after a crash
    /// the file holds the plain or the compressed bytes, both whole. Best effort: on any
    /// failure (a full disk, say) the block simply stays plain.
    fn compress_block(&mut self, id: u32) {
        // An encrypted block's records are compressed one by one before sealing (ciphertext
        // does not compress).
        if self.compressed.contains(&id)
            || self.keys.contains_key(&id)
            || self.unreadable.contains(&id)
        {
            return;
        }
        let path = self.path(id);
        let Ok(plain) = self.disk.read_all(&path) else { return };
        let Ok(packed) = snap::raw::Encoder::new().compress_vec(&plain) else { return };
        if packed.len() + SZ_HEADER >= plain.len() {
            return;
        }
        let mut file = Vec::with_capacity(SZ_HEADER + packed.len());
        file.extend_from_slice(SZ_MAGIC);
        file.extend_from_slice(&(plain.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&packed).to_le_bytes());
        file.extend_from_slice(&packed);
        if self.disk.replace_atomically(&path, &file).is_err() {
            let _ = self.disk.remove(&format!("{path}.tmp"));
            return;
        }
        self.compressed.insert(id);
        self.cache.forget(id);
    }

    /// A block's plain bytes; `None` if it is compressed and damaged.
    fn block_bytes(&mut self, id: u32) -> Result<Option<Vec<u8>>, StoreError> {
        if self.unreadable.contains(&id) {
            return Ok(None);
        }
        let file = self.disk.read_all(&self.path(id))?;
        if !self.compressed.contains(&id) {
            return Ok(Some(file));
        }
        Ok(plain_block(&file).map(|b| b.into_owned()))
    }

    fn write_record(&mut self, id: u32, rec: &[u8]) -> Result<u64, StoreError> {
        let path = self.path(id);
        let before = self.blocks.get(&id).copied().unwrap_or(0);
        let offset = match self.disk.append(&path, rec) {
            Ok(o) => o,
            Err(e) => {
                // A partial append would leave garbage for the next record to follow: cut it.
                let _ = self.disk.truncate(&path, before);
                return Err(e.into());
            }
        };
        self.blocks.insert(id, offset + rec.len() as u64);
        self.dirty.insert(id);
        let hcrc = u32::from_le_bytes([rec[17], rec[18], rec[19], rec[20]]);
        self.last_record = (id, offset, hcrc);
        Ok(offset)
    }

    /// Syncs every block written since the last sync, then the directory if a block was made.
    fn sync_written(&mut self) -> Result<(), StoreError> {
        for id in std::mem::take(&mut self.dirty) {
            self.disk.sync(&self.path(id))?;
        }
        if self.dir_dirty {
            self.disk.sync_dir(&self.config.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Writes the checkpoint now (it covers only what is durable: call after `flush`).
    fn write_checkpoint(
        &mut self,
        index: &Index<FileLoc>,
        last_seq: u64,
        last_ts: i64,
    ) -> Result<(), StoreError> {
        let Some(tail) = self.tail() else { return Ok(()) };
        let blocks: Vec<(u32, u64)> = self.blocks.iter().map(|(i, l)| (*i, *l)).collect();
        let bytes = checkpoint::encode(
            last_seq,
            last_ts,
            tail,
            self.last_record,
            &blocks,
            index.iter_exact(),
        );
        // It lists every subject: sealed whole when the store is encrypted.
        let bytes = match self.crypt.as_mut() {
            Some(crypt) => crypt.seal_file(&bytes),
            None => bytes,
        };
        self.disk.replace_atomically(&join(&self.config.dir, CHECKPOINT), &bytes)?;
        self.flushes_since_checkpoint = 0;
        self.force_checkpoint = false;
        Ok(())
    }
}

impl<D: Disk> Log for FileLog<D> {
    type Loc = FileLoc;

    fn msg_size(subject_len: usize, headers_len: usize, payload_len: usize) -> u64 {
        super::file_msg_size(subject_len, headers_len, payload_len)
    }

    fn append(
        &mut self,
        seq: u64,
        body: &Body<'_>,
        base: Base,
    ) -> Result<Option<FileLoc>, StoreError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let len = record::encode(seq, body, &mut buf);
        let result = (|| {
            let roll = match self.tail() {
                None => true,
                // An empty tail (its `Base` torn away by a crash and truncated by recovery)
                // must not take records: a tail without a `Base` lets the next flush delete
                // the blocks that carry the stream's state. Seal it and start a proper one.
                Some((_, tail_len)) => {
                    let overhead = self.seal_overhead();
                    self.roll_next
                        || tail_len == 0
                        || (tail_len > HEADER_LEN as u64 + 16 + overhead
                            && tail_len + len as u64 + overhead > self.config.block_size)
                }
            };
            if roll {
                self.start_block(base)?;
            }
            let (id, _) = self.tail().ok_or(StoreError::Disk(DiskError::NoSpace))?;
            self.seal_for(id, &mut buf, self.config.compress);
            let offset = self.write_record(id, &buf)?;
            if matches!(body, Body::Truncate { .. }) {
                // A truncate is the last record of its block: the messages that reuse the
                // sequences it freed go to a new block whose `Base` records the truncate point,
                // so damage to one file can never hide both the truncate and what followed it.
                self.roll_next = true;
            }
            Ok(matches!(body, Body::Msg { .. }).then_some(FileLoc {
                block: id,
                offset,
                len: buf.len() as u32,
            }))
        })();
        self.buf = buf;
        result
    }

    fn read(&mut self, seq: u64, e: &Entry<FileLoc>) -> Result<StoredMsg, StoreError> {
        let corrupt = StoreError::Corrupt { from: seq, to: Some(seq) };
        let id = e.loc.block;
        let sealed = self.tail().is_some_and(|(tail, _)| id != tail);
        let compressed = self.compressed.contains(&id);
        // A sealed block is worth reading whole into the cache only for a run of loads from
        // it (a consumer reading in order, maybe skipping a few): a random load reads just its
        // record, or a store larger than the cache would read a whole block per load.
        let in_a_run = self.last_read.replace((id, seq)).is_some_and(|(block, prev)| {
            block == id && (1..=RUN_STRIDE).contains(&seq.wrapping_sub(prev))
        });
        let mut own = Vec::new();
        if (compressed || (sealed && in_a_run && self.config.cache_bytes > 0))
            && !self.cache.blocks.contains_key(&id)
        {
            // Whole blocks: a compressed one can only be read whole. One too large for the
            // cache is used once and dropped.
            self.cache.budget = self.config.cache_bytes;
            self.cache.misses += 1;
            let Some(bytes) = self.block_bytes(id)? else { return Err(corrupt) };
            if bytes.len() as u64 <= self.config.cache_bytes {
                self.cache.insert(id, bytes);
            } else {
                own = bytes;
            }
        }
        if self.unreadable.contains(&id) {
            return Err(corrupt);
        }
        let key = self.keys.get(&id).cloned();
        let mut scratch = Vec::new();
        let range = e.loc.offset as usize..e.loc.offset as usize + e.loc.len as usize;
        let buf: &[u8] = if !own.is_empty() {
            own.get(range).ok_or(corrupt.clone())?
        } else if let Some(block) = self.cache.get(id) {
            block.get(range).ok_or(corrupt.clone())?
        } else {
            own.resize(e.loc.len as usize, 0);
            let n = self.disk.read_at(&self.path(id), e.loc.offset, &mut own)?;
            if n < own.len() {
                return Err(corrupt);
            }
            &own
        };
        match crypt::decode(key.as_ref(), buf, self.config.verify(), &mut scratch) {
            Ok((h, Body::Msg { ts, ttl, subject, headers, payload })) if h.seq == seq => {
                Ok(StoredMsg {
                    seq,
                    subject: Bytes::copy_from_slice(subject),
                    headers: Bytes::copy_from_slice(headers),
                    payload: Bytes::copy_from_slice(payload),
                    ts,
                    ttl: (ttl > 0).then_some(ttl),
                })
            }
            _ => Err(corrupt),
        }
    }

    fn erase(&mut self, seq: u64, ts: i64, loc: &FileLoc) -> Result<(), StoreError> {
        // The tombstone must be durable before the overwrite: a crash may keep an overwrite
        // of an old block and lose the tail, and a half-erased message nobody removed would be
        // reported as corruption.
        self.sync_written()?;
        if self.unreadable.contains(&loc.block) {
            // Its key is lost: nothing readable is left to erase.
            return Ok(());
        }
        let len = if self.keys.contains_key(&loc.block) {
            crypt::plain_body_len(loc.len)
        } else {
            loc.len - HEADER_LEN as u32
        };
        let mut buf = Vec::new();
        record::encode(seq, &Body::Erased { ts, len }, &mut buf);
        // Sealed under a fresh nonce, uncompressed so that it keeps the record's exact length.
        self.seal_for(loc.block, &mut buf, false);
        self.cache.forget(loc.block);
        if self.compressed.contains(&loc.block) {
            // A compressed block cannot be patched in place: rewrite it whole, plain, atomically.
            // A damaged one holds nothing readable to erase.
            let Some(mut plain) = self.block_bytes(loc.block)? else { return Ok(()) };
            let at = loc.offset as usize;
            let Some(slot) = plain.get_mut(at..at + buf.len()) else { return Ok(()) };
            slot.copy_from_slice(&buf);
            self.disk.replace_atomically(&self.path(loc.block), &plain)?;
            self.compressed.remove(&loc.block);
            return Ok(());
        }
        self.disk.write_at(&self.path(loc.block), loc.offset, &buf)?;
        self.dirty.insert(loc.block);
        Ok(())
    }

    fn sync(&mut self, first_live: Option<&FileLoc>) -> Result<(), StoreError> {
        if self.config.ack_before_sync() {
            return Ok(());
        }
        self.sync_written()?;
        // Reclaim blocks wholly before the oldest live message: the records that killed their
        // messages are durable now. The tail stays, it carries the state in its `Base`.
        let Some((tail, tail_len)) = self.tail() else { return Ok(()) };
        if tail_len == 0 {
            // An empty tail has no `Base` (a crash took it): the state is still carried by the
            // blocks before it, which must stay until a tail with a `Base` exists.
            return Ok(());
        }
        let keep_from = first_live.map_or(tail, |l| l.block.min(tail));
        let dead: Vec<u32> = self.blocks.range(..keep_from).map(|(id, _)| *id).collect();
        if !dead.is_empty() {
            for id in dead {
                self.cache.forget(id);
                self.compressed.remove(&id);
                self.disk.remove(&self.path(id))?;
                self.blocks.remove(&id);
                if self.keys.remove(&id).is_some() | self.unreadable.remove(&id) {
                    // After its block: a crash in between leaves an orphan key, which open
                    // removes, never a block without its key.
                    match self.disk.remove(&self.key_path(id)) {
                        Ok(()) | Err(DiskError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            self.disk.sync_dir(&self.config.dir)?;
            self.force_checkpoint = true;
        }
        Ok(())
    }

    fn after_sync(
        &mut self,
        index: &Index<FileLoc>,
        last_seq: u64,
        last_ts: i64,
    ) -> Result<(), StoreError> {
        self.flushes_since_checkpoint += 1;
        let due = self.config.checkpoint_every > 0
            && self.flushes_since_checkpoint >= self.config.checkpoint_every;
        if (due || self.force_checkpoint) && !self.damaged && !self.config.ack_before_sync() {
            self.write_checkpoint(index, last_seq, last_ts)?;
        }
        Ok(())
    }
}

/// Opening: scan state carried across blocks.
struct Scan {
    report: RecoveryReport,
    /// A damaged region whose end is not known yet: its first possibly-lost sequence.
    open_gap: Option<u64>,
    /// The oldest live sequence when that region began: a removal lost in it can have
    /// removed nothing older.
    gap_floor: u64,
    /// Bytes lost in that region: it held at most this many over `HEADER_LEN` records.
    gap_bytes: u64,
    /// The region swallowed the start of a block (its `Base`) while open. A truncate lost in
    /// the region may then precede records that reused sequences below the region's start.
    base_lost: bool,
}

impl<D: Disk> Engine<FileLog<D>> {
    /// Opens (or creates) the store in `config.dir`, recovering its state.
    pub fn open(
        mut disk: D,
        config: FileStoreConfig,
        limits: Limits,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        disk.create_dir_all(&config.dir)?;
        let mut blocks = BTreeMap::new();
        let mut compressed = BTreeSet::new();
        let mut key_files = Vec::new();
        let mut key_check = false;
        for name in disk.list(&config.dir)? {
            let path = join(&config.dir, &name);
            if name.ends_with(".tmp") {
                // A checkpoint that never got renamed in.
                disk.remove(&path)?;
            } else if let Some(id) = parse_block_name(&name) {
                let mut head = [0u8; SZ_HEADER];
                let n = disk.read_at(&path, 0, &mut head)?;
                if n == SZ_HEADER && head[..4] == SZ_MAGIC[..] {
                    // Compressed: the index and checkpoint speak of plain offsets and lengths.
                    compressed.insert(id);
                    let plain_len = u64::from_le_bytes([
                        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
                    ]);
                    blocks.insert(id, plain_len);
                } else {
                    blocks.insert(id, disk.len(&path)?);
                }
            } else if let Some(id) = parse_key_name(&name) {
                key_files.push(id);
            } else if name == KEY_CHECK {
                key_check = true;
            }
        }
        let (crypt, keys, unreadable) =
            open_keys(&mut disk, &config, &blocks, key_files, key_check)?;
        let log = FileLog {
            disk,
            config,
            blocks,
            dirty: BTreeSet::new(),
            dir_dirty: false,
            roll_next: false,
            last_record: (0, 0, 0),
            last_read: None,
            flushes_since_checkpoint: 0,
            force_checkpoint: false,
            damaged: false,
            buf: Vec::new(),
            cache: BlockCache::default(),
            compressed,
            crypt,
            keys,
            unreadable,
        };
        let mut engine = Engine::with_log(log, limits);
        let mut scan = Scan {
            report: RecoveryReport::default(),
            open_gap: None,
            gap_floor: 0,
            gap_bytes: 0,
            base_lost: false,
        };

        let start = match engine.load_checkpoint() {
            Ok(Some(cp)) => {
                scan.report.used_checkpoint = true;
                let start = (cp.tail, cp.tail_len);
                engine.last_seq = cp.last_seq;
                engine.last_ts = cp.last_ts;
                engine.log.last_record = cp.last_record;
                for (seq, e) in cp.entries {
                    engine.index.insert(seq, e);
                }
                start
            }
            Ok(None) => (0, 0),
            Err(why) => {
                scan.report.checkpoint_rejected = Some(why);
                (0, 0)
            }
        };
        let ids: Vec<u32> = engine.log.blocks.range(start.0..).map(|(id, _)| *id).collect();
        let last = ids.last().copied();
        for id in ids {
            let from = if id == start.0 { start.1 } else { 0 };
            engine.scan_block(id, from, Some(id) == last, &mut scan)?;
        }
        if let Some(from) = scan.open_gap {
            // The lost records may have assigned sequences, at most one each: never hand those
            // out again (they may have been acknowledged).
            let most = scan.gap_bytes.div_ceil(HEADER_LEN as u64).max(1);
            engine.last_seq = engine.last_seq.max(from - 1 + most);
            if scan.base_lost {
                // A lost truncate may have freed any sequence, and lost records after it
                // reused them: nothing from the first sequence on can be vouched for.
                engine.corrupt.push((1, None));
            } else {
                engine.suspect(scan.gap_floor, from - 1);
                engine.corrupt.push((from, None));
            }
        }
        engine.log.damaged = !engine.corrupt.is_empty();
        let plain_tail_under_key = engine.log.crypt.is_some()
            && engine.log.tail().is_some_and(|(tail, _)| !engine.log.keys.contains_key(&tail));
        if plain_tail_under_key {
            // Encryption was turned on for a plain store: new records go to encrypted blocks.
            engine.log.roll_next = true;
        }
        if engine.log.tail().is_some_and(|(tail, _)| engine.log.compressed.contains(&tail)) {
            // The newer tail's name was lost: never append plain records to a compressed file.
            engine.log.roll_next = true;
        }
        scan.report.corrupt = engine.corrupt.clone();
        Ok((engine, scan.report))
    }

    /// Writes a checkpoint of the durable state now.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        super::StreamStore::flush(self)?;
        self.log.write_checkpoint(&self.index, self.last_seq, self.last_ts)
    }

    /// The checkpoint if present and consistent with the blocks; `Err` says why not.
    fn load_checkpoint(&mut self) -> Result<Option<Checkpoint>, String> {
        let path = join(&self.log.config.dir, CHECKPOINT);
        if !self.log.disk.exists(&path).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let bytes = self.log.disk.read_all(&path).map_err(|e| e.to_string())?;
        let bytes = match &self.log.crypt {
            Some(crypt) => crypt.open_file(&bytes).ok_or("checkpoint does not decrypt")?,
            None => bytes,
        };
        if !self.log.unreadable.is_empty() {
            // A full scan reports what the damaged key files cost.
            return Err("a block's key file is damaged".into());
        }
        let cp = checkpoint::decode(&bytes).map_err(|e| e.to_string())?;
        for (id, len) in &cp.blocks {
            match self.log.blocks.get(id) {
                Some(have) if have >= len => {}
                _ => return Err(format!("block {id} missing or shorter than checkpointed")),
            }
        }
        if cp.blocks.last().map(|b| (b.0, b.1)) != Some((cp.tail, cp.tail_len)) {
            return Err("checkpoint tail is not its last block".into());
        }
        let (block, offset, hcrc) = cp.last_record;
        let mut h = [0; HEADER_LEN];
        let n = if self.log.compressed.contains(&block) {
            let plain = self.log.block_bytes(block).map_err(|e| e.to_string())?;
            let plain = plain.ok_or("checkpoint's last block is damaged")?;
            let rest = plain.get(offset as usize..).unwrap_or(&[]);
            let n = rest.len().min(HEADER_LEN);
            h[..n].copy_from_slice(&rest[..n]);
            n
        } else {
            self.log
                .disk
                .read_at(&self.log.path(block), offset, &mut h)
                .map_err(|e| e.to_string())?
        };
        match record::decode_header(&h[..n]) {
            // Nothing may follow a truncate in its block (see `append`).
            Ok(header) if header.header_crc == hcrc => {
                self.log.roll_next = header.kind == Kind::Truncate;
            }
            _ => return Err("checkpoint's last record does not match the block".into()),
        }
        if cp.entries.iter().any(|(_, e)| !cp.blocks.iter().any(|(id, _)| *id == e.loc.block)) {
            return Err("checkpoint entry outside its blocks".into());
        }
        Ok(Some(cp))
    }

    /// Replays one block from `from`, classifying every bad byte as torn or corrupt.
    fn scan_block(
        &mut self,
        id: u32,
        from: u64,
        is_last: bool,
        scan: &mut Scan,
    ) -> Result<(), StoreError> {
        let path = self.log.path(id);
        let compressed = self.log.compressed.contains(&id);
        let Some(data) = self.log.block_bytes(id)? else {
            // A compressed block that fails its checksum: every sequence in it is unknown
            // until the next block's `Base` bounds the damage.
            self.open_gap(scan);
            // Its plain length comes from its own (damaged) header: trust it only as far as
            // the compressed bytes could expand (snappy: under 32x). A flipped length once
            // raised `last_seq` by 10^16 (store workload seed 31363079).
            let plain_len = self.log.blocks.get(&id).copied().unwrap_or(0);
            let file_len = self.log.disk.len(&path)?;
            scan.gap_bytes += plain_len.min(file_len.saturating_mul(MAX_SNAPPY_EXPANSION));
            if is_last {
                self.log.roll_next = true;
            }
            return Ok(());
        };
        if from == 0 && scan.open_gap.is_some() {
            // Until this block's `Base` is read whole (which closes the region), it is lost.
            scan.base_lost = true;
        }
        let verify = self.log.config.verify();
        let key = self.log.keys.get(&id).cloned();
        let mut scratch = Vec::new();
        let mut off = from as usize;
        while off < data.len() {
            match crypt::decode(key.as_ref(), &data[off..], verify, &mut scratch) {
                Ok((h, body)) => {
                    self.close_gap(h.seq, &body, scan);
                    let loc = FileLoc { block: id, offset: off as u64, len: h.record_len() as u32 };
                    let is_msg = matches!(body, Body::Msg { .. });
                    self.apply(h.seq, &body, is_msg.then_some(loc));
                    if is_last && h.kind == Kind::Truncate {
                        // Nothing may follow a truncate in its block (see `append`).
                        self.log.roll_next = true;
                    }
                    self.log.last_record = (id, off as u64, h.header_crc);
                    scan.report.records_replayed += 1;
                    off += h.record_len();
                }
                Err(RecordError::Incomplete) | Err(RecordError::BadHeader)
                    if is_last
                        && !compressed
                        && (data.len() - off < HEADER_LEN
                            || data[off..].iter().all(|b| *b == 0)
                            || incomplete(&data[off..])) =>
                {
                    // Torn tail: a write that never completed, so was never acknowledged.
                    self.log.disk.truncate(&path, off as u64)?;
                    self.log.disk.sync(&path)?;
                    self.log.blocks.insert(id, off as u64);
                    scan.report.torn_bytes += (data.len() - off) as u64;
                    return Ok(());
                }
                Err(RecordError::BadBody) | Err(RecordError::Malformed) => {
                    // The header is sound: exactly one record is damaged, and we know which.
                    let Ok(h) = record::decode_header(&data[off..]) else { break };
                    self.damaged_record(h.seq, h.kind);
                    if is_last && h.kind == Kind::Truncate {
                        self.log.roll_next = true;
                    }
                    off += h.record_len();
                }
                Err(_) => {
                    // Framing lost: find the next record whose both checksums hold.
                    let next = (off + 1..data.len()).find(|&o| {
                        crypt::decode(key.as_ref(), &data[o..], true, &mut scratch).is_ok()
                    });
                    // The region runs to the next good record, or to the block's end: an
                    // erase of a block's last message can tear there too (seed 73).
                    let region = &data[off..next.unwrap_or(data.len())];
                    if let Some(seq) = torn_message_header(region, self.last_seq) {
                        // One message record whose header failed, framing intact: name exactly
                        // that sequence (a tombstone replayed later withdraws it).
                        self.damaged_record(seq, Kind::Msg);
                    } else {
                        self.open_gap(scan);
                        scan.gap_bytes += (next.unwrap_or(data.len()) - off) as u64;
                    }
                    match next {
                        Some(next) => off = next,
                        None => {
                            if is_last {
                                self.log.roll_next = true;
                            }
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn damaged_record(&mut self, seq: u64, kind: Kind) {
        match kind {
            // Pushed to the engine's list so that a later tombstone or compaction of the same
            // sequence, replayed after it, withdraws the report: a removed message is no loss.
            Kind::Msg | Kind::Skip | Kind::Erased => {
                // It assigned `seq`: anything replayed at or above it was truncated first.
                self.implied_truncate(seq);
                self.corrupt.push((seq, Some(seq)));
                // Never hand this sequence out again: it may have been acknowledged.
                self.last_seq = self.last_seq.max(seq);
            }
            // The other kinds' header carries what matters, but their loss is still reported.
            Kind::Tombstone | Kind::Compact => self.apply(seq, &bodiless(kind), None),
            // A truncate's header names its sequence, and its body only the time of the
            // message there, which the index still holds as it did when it was written: replay
            // it, or the messages it removed would come back.
            Kind::Truncate => {
                let last_ts = self.index.get(seq).map_or(0, |e| e.ts);
                self.apply(seq, &Body::Truncate { last_ts }, None);
                self.corrupt.push((seq, Some(seq)));
            }
            Kind::Base => self.corrupt.push((seq, Some(seq))),
        }
    }

    /// Records lost from here on, contents unknown, until a good record bounds them.
    fn open_gap(&self, scan: &mut Scan) {
        if scan.open_gap.is_none() {
            scan.open_gap = Some(self.last_seq + 1);
            scan.gap_floor = self.index.first().map_or(self.last_seq + 1, |(s, _)| s);
            scan.gap_bytes = 0;
            scan.base_lost = false;
        }
    }

    /// A good record after lost records bounds the damage; their contents are unknown.
    ///
    /// They may have been messages: every sequence from the region's start up to the highest
    /// one the good record shows was assigned (`to`) is reported lost. They may have been
    /// removals (tombstones, a truncate) of messages live before the region, which replay has
    /// therefore kept: those are reported as suspect, so a removed message never comes back
    /// unannounced. A truncate is always the last record of its block (see `FileLog::append`),
    /// so a region inside one block never holds a truncate *and* messages that reused the
    /// sequences it freed; a region that swallowed a block's `Base` can, and then as many
    /// sequences below the good record as the lost bytes could hold are reported (every record
    /// is at least a header). (Store workload seeds 1049, 5424, 18080, 18157, 104956,
    /// 674737424985365522, 12334350833401668934 and 12334350833401672365 each found a case an
    /// earlier rule missed.)
    fn close_gap(&mut self, seq: u64, body: &Body<'_>, scan: &mut Scan) {
        let Some(from) = scan.open_gap else { return };
        let to = match body {
            Body::Msg { .. } | Body::Skip { .. } | Body::Erased { .. } => seq.saturating_sub(1),
            Body::Base { last_seq, .. } => *last_seq,
            // What a truncate keeps is exactly known after it.
            Body::Truncate { .. } => seq,
            // A compaction read whole: nothing lost below it matters any more.
            Body::Compact => {
                scan.open_gap = Some(from.max(seq));
                scan.gap_floor = scan.gap_floor.max(seq);
                return;
            }
            Body::Tombstone => return,
        };
        // A `Base` drops everything below its first sequence: nothing under it is suspect.
        let floor = match body {
            Body::Base { .. } => seq.max(scan.gap_floor),
            _ => scan.gap_floor,
        };
        // Above `to` the good record's replay drops whatever the index holds (it was
        // truncated), so nothing there is suspect.
        self.suspect(floor, (from - 1).min(to));
        let lo = if scan.base_lost {
            let most = scan.gap_bytes.div_ceil(HEADER_LEN as u64).max(1);
            (to + 1).saturating_sub(most).clamp(1, from)
        } else {
            from
        };
        if lo <= to {
            self.corrupt.push((lo, Some(to)));
            // Never hand a reported sequence out again.
            self.last_seq = self.last_seq.max(to);
        }
        scan.open_gap = None;
        scan.base_lost = false;
    }

    /// Live messages a lost record may have removed.
    fn suspect(&mut self, from: u64, to: u64) {
        if from <= to && self.index.first().is_some_and(|(first, _)| first <= to) {
            self.corrupt.push((from, Some(to)));
        }
    }
}

fn bodiless(kind: Kind) -> Body<'static> {
    match kind {
        Kind::Compact => Body::Compact,
        _ => Body::Tombstone,
    }
}

/// The sequence of a message record whose header checksum fails while everything else about
/// it holds: its length field spans exactly to the next good record, its kind is a message or
/// an erased message, and its sequence is the next one. An erase rewrites a message record in
/// place with the same length and sequence, so a power loss that tears the rewrite inside the
/// header (a sector boundary can fall there) leaves exactly this; a bit flip elsewhere in the
/// header does too. Both are one known sequence, not a gap of unknown extent. Anything less
/// consistent returns `None` and is treated as lost framing.
fn torn_message_header(region: &[u8], last_seq: u64) -> Option<u64> {
    let field = |at: usize, n: usize| region.get(at..at + n);
    let body_len = u32::from_le_bytes(field(0, 4)?.try_into().ok()?) as usize;
    let kind = *region.get(4)?;
    let seq = u64::from_le_bytes(field(5, 8)?.try_into().ok()?);
    let is_message = kind == Kind::Msg as u8 || kind == Kind::Erased as u8;
    (is_message && HEADER_LEN + body_len == region.len() && Some(seq) == last_seq.checked_add(1))
        .then_some(seq)
}

/// A sound header whose record runs past the end of the file: torn while being appended.
fn incomplete(rest: &[u8]) -> bool {
    matches!(record::decode_header(rest), Ok(h) if h.record_len() > rest.len())
}

/// Opens the key files of an encrypted store: `None` crypt when no key is configured (and
/// then no key file may exist). A key file that is intact but does not open under the
/// configured key stops the open: that is the wrong key, and guessing on would serve garbage or
/// an empty stream. A damaged key file makes its block unreadable (reported as corruption by
/// the scan). Key files without a block are left from a block creation a crash cut short.
#[allow(clippy::type_complexity)]
fn open_keys<D: Disk>(
    disk: &mut D,
    config: &FileStoreConfig,
    blocks: &BTreeMap<u32, u64>,
    key_files: Vec<u32>,
    key_check: bool,
) -> Result<(Option<Crypt>, BTreeMap<u32, BlockKey>, BTreeSet<u32>), StoreError> {
    let mut keys = BTreeMap::new();
    let mut unreadable = BTreeSet::new();
    let check = join(&config.dir, KEY_CHECK);
    let Some(encryption) = &config.encryption else {
        if key_check || key_files.iter().any(|id| blocks.contains_key(id)) {
            return Err(StoreError::KeyRequired);
        }
        return Ok((None, keys, unreadable));
    };
    let mut crypt = Crypt::new(encryption);
    let verified = key_check
        && match crypt.verify_key_check(&disk.read_all(&check)?) {
            Ok(()) => true,
            Err(KeyFileError::WrongKey) => return Err(StoreError::KeyMismatch),
            // Only a guard: a damaged one is written again (the block key files still check).
            Err(KeyFileError::Damaged) => false,
        };
    if !verified {
        disk.replace_atomically(&check, &crypt.key_check())?;
    }
    for id in key_files {
        let path = join(&config.dir, &key_name(id));
        if !blocks.contains_key(&id) {
            disk.remove(&path)?;
            continue;
        }
        match crypt.open_key_file(id, &disk.read_all(&path)?) {
            Ok(key) => {
                keys.insert(id, key);
            }
            Err(KeyFileError::Damaged) => {
                unreadable.insert(id);
            }
            Err(KeyFileError::WrongKey) => return Err(StoreError::KeyMismatch),
        }
    }
    Ok((Some(crypt), keys, unreadable))
}
