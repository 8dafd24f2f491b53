//! Server-wide JetStream resource limits (`jetstream { max_memory_store, max_file_store }`),
//! enforced as a stand-alone nats-server enforces them:
//!
//! - a stream *reserves* its `max_bytes` (when positive) from its storage type's limit; a
//!   stream create (or an update raising `max_bytes`) that cannot be reserved is refused with
//!   "insufficient memory resources available" (10028) or "insufficient storage resources
//!   available" (10047). A stream without `max_bytes` needs one byte left unreserved.
//! - the bytes stored (summed over the streams of a storage type) are the *use*; once the use
//!   is above the limit, every publish to a stream of that storage type is refused with
//!   "insufficient resources" (10023). The message that crosses the limit is still stored, as
//!   in nats-server, which checks the use before a store and not the message's size.
//!
//! A limit of -1 is no limit (fjord does not size defaults from the machine's memory and disk
//! as nats-server does).

use super::api::Storage;
use super::errors::ApiError;

/// The configured limits in bytes; -1 (or any negative) is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_memory: i64,
    pub max_store: i64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { max_memory: -1, max_store: -1 }
    }
}

impl ServerLimits {
    pub fn limit(&self, storage: Storage) -> i64 {
        match storage {
            Storage::Memory => self.max_memory,
            Storage::File => self.max_store,
        }
    }

    /// Whether `reserved` bytes already reserved of `storage` leave room for `add` more.
    /// `add` is a new stream's `max_bytes` (1 without one), or an update's increase of it.
    pub fn check_reserve(&self, storage: Storage, reserved: i64, add: i64) -> Result<(), ApiError> {
        let limit = self.limit(storage);
        if limit < 0 || (reserved <= limit && add <= limit - reserved) {
            return Ok(());
        }
        Err(match storage {
            Storage::Memory => ApiError::memory_resources_exceeded(),
            Storage::File => ApiError::storage_resources_exceeded(),
        })
    }

    /// Whether a publish to a stream of `storage` is refused, with `used` bytes stored there.
    pub fn exceeded(&self, storage: Storage, used: u64) -> bool {
        let limit = self.limit(storage);
        limit >= 0 && used > limit as u64
    }
}

/// What a stream with this `max_bytes` reserves: its `max_bytes` when it has one.
pub fn reservation(max_bytes: i64) -> i64 {
    max_bytes.max(0)
}

/// What a stream create must find unreserved: its `max_bytes`, or one byte without one.
pub fn create_need(max_bytes: i64) -> i64 {
    if max_bytes > 0 {
        max_bytes
    } else {
        1
    }
}

/// What a stream update must find unreserved: only an increase of `max_bytes` (nats-server
/// reserves the difference; lowering it releases some).
pub fn update_need(old_max_bytes: i64, new_max_bytes: i64) -> i64 {
    (reservation(new_max_bytes) - reservation(old_max_bytes)).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    #[test]
    fn no_limit_reserves_anything() {
        let l = ServerLimits::default();
        assert!(l.check_reserve(Storage::Memory, i64::MAX, i64::MAX).is_ok());
        assert!(!l.exceeded(Storage::File, u64::MAX));
    }

    #[test]
    fn reservations_fill_up_to_the_limit_exactly() {
        let l = ServerLimits { max_memory: MB, max_store: -1 };
        assert!(l.check_reserve(Storage::Memory, 0, MB).is_ok());
        assert!(l.check_reserve(Storage::Memory, 600_000, MB - 600_000).is_ok());
        let e = l.check_reserve(Storage::Memory, 600_000, MB - 600_000 + 1).unwrap_err();
        assert_eq!((e.code, e.err_code), (500, 10028));
        assert_eq!(e.description, "insufficient memory resources available");
        // A stream without max_bytes needs one byte: refused once everything is reserved.
        assert!(l.check_reserve(Storage::Memory, MB - 1, create_need(-1)).is_ok());
        assert!(l.check_reserve(Storage::Memory, MB, create_need(-1)).is_err());
        // The file limit is apart from the memory one.
        assert!(l.check_reserve(Storage::File, MB, MB).is_ok());
    }

    #[test]
    fn the_file_limit_answers_the_storage_error() {
        let l = ServerLimits { max_memory: -1, max_store: 2_000_000 };
        let e = l.check_reserve(Storage::File, 0, 3_000_000).unwrap_err();
        assert_eq!((e.code, e.err_code), (500, 10047));
        assert_eq!(e.description, "insufficient storage resources available");
    }

    #[test]
    fn an_update_needs_only_its_increase() {
        assert_eq!(update_need(600_000, MB), MB - 600_000);
        assert_eq!(update_need(MB, 10), 0);
        assert_eq!(update_need(-1, 10), 10);
        assert_eq!(update_need(10, -1), 0);
        // Over-reserved (a limit lowered under existing streams): even no increase is refused.
        let l = ServerLimits { max_memory: 10, max_store: -1 };
        assert!(l.check_reserve(Storage::Memory, 11, 0).is_err());
        assert!(l.check_reserve(Storage::Memory, 10, 0).is_ok());
    }

    #[test]
    fn publishes_are_refused_only_once_the_use_is_above_the_limit() {
        let l = ServerLimits { max_memory: 100, max_store: -1 };
        assert!(!l.exceeded(Storage::Memory, 100));
        assert!(l.exceeded(Storage::Memory, 101));
        assert!(!l.exceeded(Storage::File, 101));
    }
}
