//! Message stores: the `StreamStore` trait and its two implementations.
//!
//! Both stores are one engine (`engine.rs`: sequences, limits, queries over an in-memory
//! index) over a different log (`Log`): `MemStore` keeps messages in RAM, `FileStore` appends
//! records to block files through a [`Disk`](crate::disk::Disk). Sharing the engine means
//! limits and queries behave identically by construction; the proptest in `tests/model.rs`
//! checks both against a separate, obviously-correct model anyway.
//!
//! Sans-IO durability (group commit): every mutation is appended at once and is *pending*;
//! `flush()` makes everything pending durable with one sync per dirty file and returns the
//! sequences stored since the previous flush. A driver batches many `store()` calls, calls
//! `flush()` once, and only then acknowledges them. Other mutations (remove, purge, ...) are
//! numbered by `lsn()`; they are durable once `durable_lsn()` reaches their number.
//!
//! Time is an input: timestamps are given to `store`, and age/TTL limits apply when the driver
//! calls `expire(now)`.

pub mod checkpoint;
pub mod crypt;
mod engine;
mod file;
mod index;
mod mem;
pub mod record;
mod size;
pub mod snapshot;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use crypt::{Cipher, Encryption, EncryptionConfig, StoreKey};
pub use engine::{Engine, Log};
#[cfg(any(test, feature = "canaries"))]
pub use file::Canaries;
pub use file::{plain_block, FileLoc, FileLog, FileStoreConfig, RecoveryReport};
pub use mem::MemLog;
pub use size::{file_msg_size, mem_msg_size};

use crate::disk::DiskError;

/// A store of messages in memory.
pub type MemStore = Engine<MemLog>;
/// A store of messages in block files on a `Disk`.
pub type FileStore<D> = Engine<FileLog<D>>;

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
    /// Unix nanoseconds, as given to `store`.
    pub ts: i64,
    /// Per-message time to live in nanoseconds, if any.
    pub ttl: Option<u64>,
}

/// What happens when a store would exceed a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Discard {
    /// Remove the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// Limits enforced on every store (0 = unlimited, as in nats-server's config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_msgs: u64,
    pub max_bytes: u64,
    /// Nanoseconds; applied by `expire(now)`.
    pub max_age: u64,
    pub max_msgs_per_subject: u64,
    pub discard: Discard,
    /// With `Discard::New`, a subject at `max_msgs_per_subject` refuses new messages too;
    /// without it, a new message replaces the subject's oldest (nats-server's
    /// `discard_new_per_subject`).
    pub discard_new_per_subject: bool,
}

/// The stream's state, as nats-server's `StreamState` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    pub msgs: u64,
    pub bytes: u64,
    /// The lowest live sequence, or `last_seq + 1` when the store is empty.
    pub first_seq: u64,
    /// Timestamp of the first live message, 0 when empty.
    pub first_ts: i64,
    /// The highest sequence assigned (stored or skipped), even if since removed.
    pub last_seq: u64,
    pub last_ts: i64,
    /// Sequences between first and last that hold no message.
    pub num_deleted: u64,
    pub num_subjects: u64,
}

/// One subject's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubjectState {
    pub msgs: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Discard-new and the store is at `max_msgs`.
    MaxMsgs,
    /// Discard-new and the message would exceed `max_bytes` (or it alone exceeds it).
    MaxBytes,
    /// Discard-new and the subject is at `max_msgs_per_subject`.
    MaxMsgsPerSubject,
    /// `store_at` with a sequence not above the last one.
    SequenceMismatch {
        last_seq: u64,
    },
    InvalidSubject,
    /// A message larger than the record format holds.
    TooLarge,
    /// Stored bytes failed their checksum: these sequences are lost on this replica and must be
    /// repaired from elsewhere. `to` is `None` when the end of the damage is unknown.
    Corrupt {
        from: u64,
        to: Option<u64>,
    },
    Disk(DiskError),
    /// The configured encryption key does not open this store's key files.
    KeyMismatch,
    /// The store is encrypted and no key is configured.
    KeyRequired,
}

impl From<DiskError> for StoreError {
    fn from(e: DiskError) -> Self {
        StoreError::Disk(e)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::MaxMsgs => f.write_str("maximum messages exceeded"),
            StoreError::MaxBytes => f.write_str("maximum bytes exceeded"),
            StoreError::MaxMsgsPerSubject => f.write_str("maximum messages per subject exceeded"),
            StoreError::SequenceMismatch { last_seq } => {
                write!(f, "sequence must be above the last sequence {last_seq}")
            }
            StoreError::InvalidSubject => f.write_str("invalid subject"),
            StoreError::TooLarge => f.write_str("message too large"),
            StoreError::Corrupt { from, to: Some(to) } => {
                write!(f, "corrupt sequences {from}..={to}")
            }
            StoreError::Corrupt { from, to: None } => write!(f, "corrupt sequences from {from}"),
            StoreError::Disk(e) => write!(f, "disk: {e}"),
            StoreError::KeyMismatch => f.write_str("encryption key does not match"),
            StoreError::KeyRequired => {
                f.write_str("stream is encrypted and no encryption key is configured")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The operations JetStream, mirrors, Raft replication and KV need from a store (nats-server's
/// `server/store.go` was the checklist). Filters are subjects, possibly with wildcards.
pub trait StreamStore {
    /// Stores a message at `last_seq + 1`, enforcing limits; returns its sequence (pending
    /// until `flush`).
    fn store(
        &mut self,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        ts: i64,
        ttl: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Stores at a given sequence (replication); `seq` must be above `last_seq`, any gap reads
    /// as deleted.
    fn store_at(
        &mut self,
        seq: u64,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        ts: i64,
        ttl: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Reserves `count` sequences without messages; returns the new last sequence.
    fn skip(&mut self, count: u64, ts: i64) -> Result<u64, StoreError>;

    fn load(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError>;
    /// The first message at or after `start` whose subject matches `filter`.
    fn load_next(&mut self, filter: &[u8], start: u64) -> Result<Option<StoredMsg>, StoreError>;
    /// The newest message matching `filter`.
    fn load_last(&mut self, filter: &[u8]) -> Result<Option<StoredMsg>, StoreError>;
    /// The last message at or before `start` matching `filter`.
    fn load_prev(&mut self, filter: &[u8], start: u64) -> Result<Option<StoredMsg>, StoreError>;

    /// Removes a message; false if there was none.
    fn remove(&mut self, seq: u64) -> Result<bool, StoreError>;
    /// Removes a message and overwrites its stored bytes.
    fn erase(&mut self, seq: u64) -> Result<bool, StoreError>;
    /// Removes every message; returns how many.
    fn purge(&mut self) -> Result<u64, StoreError>;
    /// Removes messages matching `filter`: with `up_to`, only those below that sequence; with
    /// `keep`, all but the newest `keep` per subject. Returns how many.
    fn purge_ex(
        &mut self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Removes everything below `seq`; returns how many.
    fn compact(&mut self, seq: u64) -> Result<u64, StoreError>;
    /// Removes everything above `seq`, which becomes the last sequence.
    fn truncate(&mut self, seq: u64) -> Result<(), StoreError>;
    /// Applies max age and per-message TTLs at time `now`; returns how many were removed.
    fn expire(&mut self, now: i64) -> Result<u64, StoreError>;

    fn state(&self) -> StreamState;
    /// Sequences between first and last holding no message.
    fn deleted(&self) -> Vec<u64>;
    fn subjects_state(&self, filter: &[u8]) -> std::collections::BTreeMap<Bytes, SubjectState>;
    fn subjects_totals(&self, filter: &[u8]) -> std::collections::BTreeMap<Bytes, u64>;
    /// Messages at or after `start` matching `filter`; with `last_per_subject`, subjects whose
    /// newest message is at or after `start`.
    fn num_pending(&self, filter: &[u8], start: u64, last_per_subject: bool) -> u64;
    /// The first live sequence whose timestamp is at or after `ts`, or `last_seq + 1`.
    fn seq_at_time(&self, ts: i64) -> u64;

    /// Makes every pending mutation durable; returns the sequences stored since the last flush,
    /// which the driver may now acknowledge.
    fn flush(&mut self) -> Result<Vec<u64>, StoreError>;
    /// The number of the latest mutation.
    fn lsn(&self) -> u64;
    /// Mutations numbered up to here are durable.
    fn durable_lsn(&self) -> u64;
}
