//! A connection's outbound buffer: where every sender appends frames for this client, and
//! from which the connection's writer task flushes them, many frames per syscall.
//!
//! Senders are other connections' reader tasks, on any thread. Each holds this buffer's own
//! small lock only for the memcpy of a frame, so senders to different clients never contend,
//! and a slow client costs its senders nothing: past `max_pending` bytes the client is marked
//! a slow consumer and its pending bytes are dropped, never waited on.

use std::sync::atomic::{AtomicBool, Ordering};

use fjord_core::client::conn::CloseReason;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the writer task; a permit is kept if it is not waiting yet.
    wake: Notify,
    max_pending: usize,
    /// Set once the connection is closing, so senders skip it without taking the lock.
    closing: AtomicBool,
}

struct State {
    buf: Vec<u8>,
    close: Option<CloseReason>,
}

/// What the writer task should do next.
pub enum Drain {
    /// Write these bytes (the caller returns the emptied Vec with `recycle`).
    Write(Vec<u8>),
    /// Write these bytes, then close the connection for this reason.
    WriteThenClose(Vec<u8>, CloseReason),
    /// Close at once: pending bytes were dropped (slow consumer).
    Abort(CloseReason),
    Idle,
}

impl Outbound {
    pub fn new(max_pending: usize) -> Self {
        Outbound {
            state: Mutex::new(State { buf: Vec::with_capacity(4096), close: None }),
            wake: Notify::new(),
            max_pending,
            closing: AtomicBool::new(false),
        }
    }

    /// Appends a frame. Returns true when the writer needs a wake (the buffer was empty), so
    /// callers wake each writer once per batch, not per frame.
    pub fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.closing.load(Ordering::Relaxed) {
            return false;
        }
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        let was_empty = state.buf.is_empty();
        encode(&mut state.buf);
        if state.buf.len() > self.max_pending {
            state.buf = Vec::new();
            state.close = Some(CloseReason::SlowConsumer);
            self.closing.store(true, Ordering::Relaxed);
            drop(state);
            self.wake.notify_one();
            return false;
        }
        was_empty
    }

    pub fn push(&self, bytes: &[u8]) -> bool {
        self.push_with(|buf| buf.extend_from_slice(bytes))
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks the writer to flush what is pending and then close.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(reason);
        }
        self.closing.store(true, Ordering::Relaxed);
        drop(state);
        self.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// Takes what is pending, leaving `spare` (an emptied buffer from the last write) behind.
    pub fn drain(&self, spare: Vec<u8>) -> Drain {
        let mut state = self.state.lock();
        let bytes = std::mem::replace(&mut state.buf, spare);
        match (&state.close, bytes.is_empty()) {
            (Some(CloseReason::SlowConsumer), _) => Drain::Abort(CloseReason::SlowConsumer),
            (Some(reason), _) => Drain::WriteThenClose(bytes, reason.clone()),
            (None, true) => {
                state.buf = bytes;
                Drain::Idle
            }
            (None, false) => Drain::Write(bytes),
        }
    }

    /// Why the connection is closing, once it is (monitoring lists closed connections by it).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().close.clone()
    }

    /// The limit this connection started with (a reload does not change it).
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    pub fn pending_bytes(&self) -> usize {
        self.state.lock().buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_once_per_batch() {
        let out = Outbound::new(1024);
        assert!(out.push(b"a"));
        assert!(!out.push(b"b"));
        match out.drain(Vec::new()) {
            Drain::Write(bytes) => assert_eq!(bytes, b"ab"),
            _ => panic!("expected bytes"),
        }
        assert!(out.push(b"c"), "an emptied buffer wakes again");
    }

    #[test]
    fn over_max_pending_is_a_slow_consumer_and_drops_bytes() {
        let out = Outbound::new(4);
        out.push(b"abc");
        out.push(b"de");
        assert!(out.is_closing());
        assert!(matches!(out.drain(Vec::new()), Drain::Abort(CloseReason::SlowConsumer)));
        assert!(!out.push(b"x"), "closed buffers take nothing");
    }

    #[test]
    fn close_flushes_first() {
        let out = Outbound::new(1024);
        out.push(b"-ERR 'x'\r\n");
        out.close(CloseReason::AuthorizationViolation);
        match out.drain(Vec::new()) {
            Drain::WriteThenClose(bytes, CloseReason::AuthorizationViolation) => {
                assert_eq!(bytes, b"-ERR 'x'\r\n")
            }
            _ => panic!("expected flush then close"),
        }
    }
}
