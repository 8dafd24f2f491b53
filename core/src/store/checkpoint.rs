//! The index checkpoint: the whole in-memory index at a durable point of the log, so that
//! opening a store reads one file instead of every block.
//!
//! ```text
//! "FJCK" | version u8 | last_seq u64 | last_ts i64
//! | tail u32 | tail_len u64                       where replay resumes
//! | last_block u32 | last_offset u64 | last_header_crc u32   the record just before that point
//! | nblocks u32 | (block u32, len u64)*          every block the index may point into
//! | nentries u64 | entry*                         seq u64 | block u32 | offset u64 | len u32
//!                                                 | ts i64 | expires i64 (MIN = none)
//!                                                 | size u64 | subject_len u16 | subject
//! | crc32c u32 of everything before it
//! ```
//!
//! A checkpoint is only a cache: the store checks it against the blocks (every block present
//! and at least as long, the last record's header checksum where it says) and falls back to a
//! full scan when anything disagrees.

use bytes::Bytes;

use super::file::FileLoc;
use super::index::Entry;

const MAGIC: &[u8; 4] = b"FJCK";
/// 2: entry sizes are nats-server's file record sizes (`size.rs`); a version 1 checkpoint
/// holds the old sizes and is refused, so the store rescans its blocks once.
const VERSION: u8 = 2;
const FIXED: usize = 4 + 1 + 8 + 8 + 4 + 8 + 4 + 8 + 4 + 4 + 8;
const ENTRY_FIXED: usize = 8 + 4 + 8 + 4 + 8 + 8 + 8 + 2;
const BLOCK_LEN: usize = 4 + 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_seq: u64,
    pub last_ts: i64,
    pub tail: u32,
    pub tail_len: u64,
    /// Block, offset and header checksum of the last record before (`tail`, `tail_len`).
    pub last_record: (u32, u64, u32),
    pub blocks: Vec<(u32, u64)>,
    pub entries: Vec<(u64, Entry<FileLoc>)>,
}

/// Why checkpoint bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    TooShort,
    BadMagic,
    UnsupportedVersion(u8),
    BadChecksum,
    /// The checksum holds but the contents do not parse: a bug, never trusted.
    Malformed,
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::TooShort => f.write_str("checkpoint too short"),
            CheckpointError::BadMagic => f.write_str("not a checkpoint"),
            CheckpointError::UnsupportedVersion(v) => write!(f, "checkpoint version {v}"),
            CheckpointError::BadChecksum => f.write_str("checkpoint checksum mismatch"),
            CheckpointError::Malformed => f.write_str("malformed checkpoint"),
        }
    }
}

pub fn encode<'a>(
    last_seq: u64,
    last_ts: i64,
    tail: (u32, u64),
    last_record: (u32, u64, u32),
    blocks: &[(u32, u64)],
    entries: impl ExactSizeIterator<Item = (u64, &'a Entry<FileLoc>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + entries.len() * (ENTRY_FIXED + 16));
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&last_seq.to_le_bytes());
    out.extend_from_slice(&last_ts.to_le_bytes());
    out.extend_from_slice(&tail.0.to_le_bytes());
    out.extend_from_slice(&tail.1.to_le_bytes());
    out.extend_from_slice(&last_record.0.to_le_bytes());
    out.extend_from_slice(&last_record.1.to_le_bytes());
    out.extend_from_slice(&last_record.2.to_le_bytes());
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for (id, len) in blocks {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (seq, e) in entries {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&e.loc.block.to_le_bytes());
        out.extend_from_slice(&e.loc.offset.to_le_bytes());
        out.extend_from_slice(&e.loc.len.to_le_bytes());
        out.extend_from_slice(&e.ts.to_le_bytes());
        out.extend_from_slice(&e.expires.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&(e.subject.len() as u16).to_le_bytes());
        out.extend_from_slice(&e.subject);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A cursor that refuses to read past the end instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        if self.0.len() < n {
            return Err(CheckpointError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, CheckpointError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

pub fn decode(buf: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if buf.len() < FIXED + 4 {
        return Err(CheckpointError::TooShort);
    }
    if &buf[..4] != MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(CheckpointError::UnsupportedVersion(buf[4]));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(CheckpointError::BadChecksum);
    }
    let mut r = Reader(&body[5..]);
    let last_seq = r.u64()?;
    let last_ts = r.u64()? as i64;
    let tail = r.u32()?;
    let tail_len = r.u64()?;
    let last_record = (r.u32()?, r.u64()?, r.u32()?);
    let nblocks = r.u32()? as usize;
    // Counts come from the file: bound them by the bytes left before allocating.
    if nblocks > r.0.len() / BLOCK_LEN {
        return Err(CheckpointError::Malformed);
    }
    let mut blocks = Vec::with_capacity(nblocks);
    for _ in 0..nblocks {
        blocks.push((r.u32()?, r.u64()?));
    }
    let n = r.u64()?;
    if n > (r.0.len() / ENTRY_FIXED) as u64 {
        return Err(CheckpointError::Malformed);
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let seq = r.u64()?;
        let loc = FileLoc { block: r.u32()?, offset: r.u64()?, len: r.u32()? };
        let ts = r.u64()? as i64;
        let expires = match r.u64()? as i64 {
            i64::MIN => None,
            at => Some(at),
        };
        let size = r.u64()?;
        let subject_len = r.u16()? as usize;
        let subject = Bytes::copy_from_slice(r.take(subject_len)?);
        entries.push((seq, Entry { subject, ts, size, expires, loc }));
    }
    if !r.0.is_empty() {
        return Err(CheckpointError::Malformed);
    }
    Ok(Checkpoint { last_seq, last_ts, tail, tail_len, last_record, blocks, entries })
}
