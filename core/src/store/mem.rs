//! `MemLog`: messages kept in RAM, nothing persisted. Syncing is free, so `flush` makes
//! everything durable at once (for as long as the process lives).

use bytes::Bytes;

use super::engine::{Base, Engine, Log};
use super::index::Entry;
use super::record::Body;
use super::{Limits, StoreError, StoredMsg};

/// A message's headers and payload, shared with every reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemLoc {
    headers: Bytes,
    payload: Bytes,
}

#[derive(Clone, Debug, Default)]
pub struct MemLog;

impl Log for MemLog {
    type Loc = MemLoc;

    fn msg_size(subject_len: usize, headers_len: usize, payload_len: usize) -> u64 {
        super::mem_msg_size(subject_len, headers_len, payload_len)
    }

    fn append(
        &mut self,
        _seq: u64,
        body: &Body<'_>,
        _base: Base,
    ) -> Result<Option<MemLoc>, StoreError> {
        Ok(match *body {
            Body::Msg { headers, payload, .. } => Some(MemLoc {
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(payload),
            }),
            _ => None,
        })
    }

    fn read(&mut self, seq: u64, e: &Entry<MemLoc>) -> Result<StoredMsg, StoreError> {
        Ok(StoredMsg {
            seq,
            subject: e.subject.clone(),
            headers: e.loc.headers.clone(),
            payload: e.loc.payload.clone(),
            ts: e.ts,
            ttl: e.expires.map(|x| x.saturating_sub(e.ts) as u64),
        })
    }

    fn erase(&mut self, _seq: u64, _ts: i64, _loc: &MemLoc) -> Result<(), StoreError> {
        // The index entry, the only copy, is already gone.
        Ok(())
    }

    fn sync(&mut self, _first_live: Option<&MemLoc>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Engine<MemLog> {
    pub fn new(limits: Limits) -> Self {
        Engine::with_log(MemLog, limits)
    }
}
