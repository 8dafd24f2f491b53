//! The on-disk record: the unit every block file is made of.
//!
//! ```text
//! body_len u32 | kind u8 | seq u64 | body_crc u32 | header_crc u32 | body[body_len]
//! ```
//! little endian; `header_crc` is CRC-32C of the 17 bytes before it, `body_crc` of the body.
//!
//! Why two checksums: a header that checks out can be trusted for its length and sequence even
//! when its body is corrupt, so recovery keeps framing (it skips exactly one record) and can
//! name the sequence that was lost instead of guessing. A header that fails its own checksum
//! is either torn (the file ends inside it) or corrupt; recovery tells them apart (see
//! `file.rs`).
//!
//! Bodies by kind:
//! - `Msg`: `ts i64 | ttl u64 (0 = none) | subject_len u16 | headers_len u32 | subject |
//!   headers | payload`;
//! - `Tombstone`, `Compact`: empty (the header's seq is everything);
//! - `Erased`: `ts i64` then zeros, as long as the message it overwrote, so the block keeps
//!   its framing and replay still sees the sequence and time the message assigned;
//! - `Skip`: `ts i64` (the header's seq is the new last sequence);
//! - `Truncate`: `last_ts i64`;
//! - `Base`: `last_seq u64 | last_ts i64` (the header's seq is the first sequence): written
//!   first in every block so a block can be replayed without the ones before it.

/// Bytes before the body.
pub const HEADER_LEN: usize = 21;
/// Larger bodies are taken as corruption rather than allocated (nats-server uses 32 MiB).
pub const MAX_BODY_LEN: u32 = 64 << 20;
const MSG_FIXED: usize = 8 + 8 + 2 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Msg = 1,
    Tombstone = 2,
    Erased = 3,
    Skip = 4,
    Compact = 5,
    Truncate = 6,
    Base = 7,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Msg,
            2 => Kind::Tombstone,
            3 => Kind::Erased,
            4 => Kind::Skip,
            5 => Kind::Compact,
            6 => Kind::Truncate,
            7 => Kind::Base,
            _ => return None,
        })
    }
}

/// A record's body, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Msg {
        ts: i64,
        ttl: u64,
        subject: &'a [u8],
        headers: &'a [u8],
        payload: &'a [u8],
    },
    Tombstone,
    /// `len` is the body length, `ts` the erased message's timestamp.
    Erased {
        ts: i64,
        len: u32,
    },
    Skip {
        ts: i64,
    },
    Compact,
    Truncate {
        last_ts: i64,
    },
    Base {
        last_seq: u64,
        last_ts: i64,
    },
}

impl Body<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Msg { .. } => Kind::Msg,
            Body::Tombstone => Kind::Tombstone,
            Body::Erased { .. } => Kind::Erased,
            Body::Skip { .. } => Kind::Skip,
            Body::Compact => Kind::Compact,
            Body::Truncate { .. } => Kind::Truncate,
            Body::Base { .. } => Kind::Base,
        }
    }
}

/// A validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub body_len: u32,
    pub kind: Kind,
    pub seq: u64,
    pub body_crc: u32,
    pub header_crc: u32,
}

impl Header {
    /// Bytes of the whole record.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes end inside the record: a torn write if this is the end of the log.
    Incomplete,
    /// The header fails its checksum, or names an unknown kind or an absurd length.
    BadHeader,
    /// The header is sound, the body fails its checksum.
    BadBody,
    /// The body passes its checksum yet does not parse: a bug or a collision, never data.
    Malformed,
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

/// Appends the encoded record to `out`; returns its length.
pub fn encode(seq: u64, body: &Body<'_>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    match *body {
        Body::Msg { ts, ttl, subject, headers, payload } => {
            out.extend_from_slice(&ts.to_le_bytes());
            out.extend_from_slice(&ttl.to_le_bytes());
            out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
            out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
            out.extend_from_slice(subject);
            out.extend_from_slice(headers);
            out.extend_from_slice(payload);
        }
        Body::Tombstone | Body::Compact => {}
        Body::Erased { ts, len } => {
            out.extend_from_slice(&ts.to_le_bytes());
            out.resize(out.len() + (len as usize).saturating_sub(8), 0);
        }
        Body::Skip { ts } => out.extend_from_slice(&ts.to_le_bytes()),
        Body::Truncate { last_ts } => out.extend_from_slice(&last_ts.to_le_bytes()),
        Body::Base { last_seq, last_ts } => {
            out.extend_from_slice(&last_seq.to_le_bytes());
            out.extend_from_slice(&last_ts.to_le_bytes());
        }
    }
    frame(out, start, body.kind() as u8, seq)
}

/// Fills in the header reserved at `out[start..start + HEADER_LEN]` for the body that follows
/// it to the end of `out` (whatever its encoding: plain here, sealed in `crypt.rs`); returns
/// the record's length.
pub fn frame(out: &mut [u8], start: usize, kind: u8, seq: u64) -> usize {
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    let body_crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    let h = &mut out[start..start + HEADER_LEN];
    h[0..4].copy_from_slice(&body_len.to_le_bytes());
    h[4] = kind;
    h[5..13].copy_from_slice(&seq.to_le_bytes());
    h[13..17].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&h[..17]);
    h[17..21].copy_from_slice(&header_crc.to_le_bytes());
    out.len() - start
}

/// Decodes and checks the header at the start of `buf`.
pub fn decode_header(buf: &[u8]) -> Result<Header, RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::Incomplete);
    }
    let header_crc = u32_at(buf, 17);
    if crc32c::crc32c(&buf[..17]) != header_crc {
        return Err(RecordError::BadHeader);
    }
    let body_len = u32_at(buf, 0);
    let kind = Kind::from_u8(buf[4]).ok_or(RecordError::BadHeader)?;
    if body_len > MAX_BODY_LEN {
        return Err(RecordError::BadHeader);
    }
    Ok(Header { body_len, kind, seq: u64_at(buf, 5), body_crc: u32_at(buf, 13), header_crc })
}

/// Decodes the record at the start of `buf`, checking both checksums unless `verify` is false
/// (a mutation canary: tests prove they notice).
pub fn decode(buf: &[u8], verify: bool) -> Result<(Header, Body<'_>), RecordError> {
    let header = decode_header(buf)?;
    let Some(body) = buf.get(HEADER_LEN..header.record_len()) else {
        return Err(RecordError::Incomplete);
    };
    if verify && crc32c::crc32c(body) != header.body_crc {
        return Err(RecordError::BadBody);
    }
    Ok((header, decode_body(header.kind, body)?))
}

pub fn decode_body(kind: Kind, b: &[u8]) -> Result<Body<'_>, RecordError> {
    let exact = |n: usize| if b.len() == n { Ok(()) } else { Err(RecordError::Malformed) };
    Ok(match kind {
        Kind::Msg => {
            if b.len() < MSG_FIXED {
                return Err(RecordError::Malformed);
            }
            let ts = u64_at(b, 0) as i64;
            let ttl = u64_at(b, 8);
            let subject_len = u16::from_le_bytes([b[16], b[17]]) as usize;
            let headers_len = u32_at(b, 18) as usize;
            let rest = &b[MSG_FIXED..];
            if subject_len.checked_add(headers_len).is_none_or(|n| n > rest.len()) {
                return Err(RecordError::Malformed);
            }
            let (subject, rest) = rest.split_at(subject_len);
            let (headers, payload) = rest.split_at(headers_len);
            Body::Msg { ts, ttl, subject, headers, payload }
        }
        Kind::Tombstone => {
            exact(0)?;
            Body::Tombstone
        }
        Kind::Compact => {
            exact(0)?;
            Body::Compact
        }
        Kind::Erased => {
            if b.len() < 8 {
                return Err(RecordError::Malformed);
            }
            Body::Erased { ts: u64_at(b, 0) as i64, len: b.len() as u32 }
        }
        Kind::Skip => {
            exact(8)?;
            Body::Skip { ts: u64_at(b, 0) as i64 }
        }
        Kind::Truncate => {
            exact(8)?;
            Body::Truncate { last_ts: u64_at(b, 0) as i64 }
        }
        Kind::Base => {
            exact(16)?;
            Body::Base { last_seq: u64_at(b, 0), last_ts: u64_at(b, 8) as i64 }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(seq: u64, body: Body<'_>) {
        let mut buf = Vec::new();
        let n = encode(seq, &body, &mut buf);
        assert_eq!(n, buf.len());
        let (h, got) = decode(&buf, true).unwrap();
        assert_eq!((h.seq, got), (seq, body));
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], true).unwrap_err(), RecordError::Incomplete);
        }
    }

    #[test]
    fn every_kind_roundtrips_and_every_prefix_is_incomplete() {
        roundtrip(7, Body::Msg { ts: -3, ttl: 9, subject: b"a.b", headers: b"H", payload: b"xyz" });
        roundtrip(1, Body::Tombstone);
        roundtrip(2, Body::Erased { ts: 3, len: 12 });
        roundtrip(3, Body::Skip { ts: 5 });
        roundtrip(4, Body::Compact);
        roundtrip(5, Body::Truncate { last_ts: 6 });
        roundtrip(6, Body::Base { last_seq: 9, last_ts: 8 });
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode(
            42,
            &Body::Msg { ts: 1, ttl: 0, subject: b"s", headers: b"", payload: b"pay" },
            &mut buf,
        );
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(&b, true).unwrap_err();
            let expected =
                if bit / 8 < HEADER_LEN { RecordError::BadHeader } else { RecordError::BadBody };
            assert_eq!(err, expected, "bit {bit}");
        }
    }
}
