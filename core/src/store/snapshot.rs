//! Snapshot and restore of a whole store as one byte stream (for catch-up of a new replica,
//! backups, moving a stream), with the same engine code for both stores.
//!
//! ```text
//! "FJSN" | version u8 | last_seq u64 | last_ts i64 | count u64
//! | record * count          each live message as a block record (record.rs): seq, both CRCs
//! | crc32c u32 of everything before it
//! ```
//!
//! Why records: they already carry a header and a body checksum each, and the decoder that
//! reads them is the one recovery trusts (and the fuzzer exercises). The trailing checksum
//! over the whole stream makes restore all-or-nothing: a damaged or truncated snapshot is
//! refused before a single message is applied, so a failed restore leaves the store empty
//! rather than holding a silent subset. Sequences between messages come back as deleted, and
//! `last_seq`/`last_ts` come back even when the newest sequences were removed, so a restored
//! store never hands out a sequence the original had already used.

use super::engine::{Engine, Log};
use super::record::{self, Body};
use super::{StoreError, StreamStore};

const MAGIC: &[u8; 4] = b"FJSN";
const VERSION: u8 = 1;
const FIXED: usize = 4 + 1 + 8 + 8 + 8;

/// Why a restore was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// Restore only into an empty store (nothing stored, no sequence assigned).
    NotEmpty,
    /// The bytes are not a whole, intact snapshot; nothing was applied.
    Invalid(&'static str),
    /// The store failed while exporting or applying.
    Store(StoreError),
}

impl From<StoreError> for SnapshotError {
    fn from(e: StoreError) -> Self {
        SnapshotError::Store(e)
    }
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::NotEmpty => f.write_str("restore needs an empty store"),
            SnapshotError::Invalid(why) => write!(f, "invalid snapshot: {why}"),
            SnapshotError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<L: Log> Engine<L> {
    /// Appends a snapshot of every live message to `out`. A message that fails its checksum
    /// fails the snapshot (`Corrupt`): a snapshot that silently skipped it would hand a damaged
    /// replica's loss to whoever restores it.
    pub fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.last_seq.to_le_bytes());
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        out.extend_from_slice(&self.index.len().to_le_bytes());
        let seqs: Vec<u64> = self.index.iter().map(|(s, _)| s).collect();
        for seq in seqs {
            let Some(entry) = self.index.get(seq) else { continue };
            let m = self.log.read(seq, entry)?;
            let body = Body::Msg {
                ts: m.ts,
                ttl: m.ttl.unwrap_or(0),
                subject: &m.subject,
                headers: &m.headers,
                payload: &m.payload,
            };
            record::encode(seq, &body, out);
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Restores a snapshot into this empty store; returns how many messages it holds. The
    /// messages are pending like any store: `flush` makes them durable.
    pub fn restore(&mut self, snap: &[u8]) -> Result<u64, SnapshotError> {
        if self.last_seq != 0 || self.index.len() != 0 {
            return Err(SnapshotError::NotEmpty);
        }
        if snap.len() < FIXED + 4 {
            return Err(SnapshotError::Invalid("too short"));
        }
        let (body, crc) = snap.split_at(snap.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(SnapshotError::Invalid("checksum mismatch"));
        }
        if &body[..4] != MAGIC {
            return Err(SnapshotError::Invalid("not a snapshot"));
        }
        if body[4] != VERSION {
            return Err(SnapshotError::Invalid("unsupported version"));
        }
        let last_seq = u64_at(body, 5);
        let last_ts = u64_at(body, 13) as i64;
        let count = u64_at(body, 21);
        // Validate everything before applying anything.
        let mut msgs = Vec::new();
        let mut off = FIXED;
        let mut prev = 0;
        while off < body.len() {
            let (h, b) = record::decode(&body[off..], true)
                .map_err(|_| SnapshotError::Invalid("bad record"))?;
            let Body::Msg { ts, ttl, subject, headers, payload } = b else {
                return Err(SnapshotError::Invalid("a record that is not a message"));
            };
            if h.seq <= prev || h.seq > last_seq {
                return Err(SnapshotError::Invalid("sequences out of order"));
            }
            prev = h.seq;
            msgs.push((h.seq, ts, ttl, subject, headers, payload));
            off += h.record_len();
        }
        if msgs.len() as u64 != count {
            return Err(SnapshotError::Invalid("message count mismatch"));
        }
        for (seq, ts, ttl, subject, headers, payload) in msgs {
            self.store_at(seq, subject, headers, payload, ts, (ttl > 0).then_some(ttl))?;
        }
        if last_seq > self.last_seq {
            self.skip(last_seq - self.last_seq, last_ts)?;
        }
        Ok(count)
    }
}
