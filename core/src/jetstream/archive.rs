//! The stream archive that `$JS.API.STREAM.SNAPSHOT` streams out and `STREAM.RESTORE` takes
//! back: one stream's metadata (config, creation time, consumers with their state) and its
//! store's snapshot (`store::snapshot`), in one checksummed, compressed byte string.
//!
//! ```text
//! snappy frame format (the framing nats-server's s2 reader also accepts) of:
//!   "FJBK" | version u8 | meta_len u32 | meta (JSON) | store_len u64 | store snapshot
//!   | crc32c u32 of everything before it
//! ```
//!
//! Why this shape: the nats CLI stores what it receives as `stream.tar.s2` and runs an s2
//! reader over it to count progress, so the bytes are a valid snappy stream (the s2 reader
//! decodes snappy framing). Inside, fjord's own layout, not nats-server's tar of block files:
//! the archive is only restorable by fjord (docs/compatibility.md says so). The trailing
//! checksum and the two lengths make a truncated or damaged archive fail to decode as a whole,
//! before anything is created from it; the frame checksums of the snappy stream and the store
//! snapshot's own checksum are further layers.

use std::io::{Read, Write};

const MAGIC: &[u8; 4] = b"FJBK";
const VERSION: u8 = 1;

/// Why an archive was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// Not a snappy stream, or one with a damaged frame.
    Compression(String),
    /// Decompressed, but not a whole fjord archive.
    Invalid(&'static str),
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveError::Compression(e) => write!(f, "snapshot is not a valid snappy stream: {e}"),
            ArchiveError::Invalid(why) => write!(f, "snapshot is not a valid fjord archive: {why}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The archive of `meta` (JSON) and `store` (a store snapshot). Compressing into memory does
/// not fail in practice; the encoder's `io::Error` is passed on rather than assumed away.
pub fn encode(meta: &[u8], store: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let mut raw = Vec::with_capacity(4 + 1 + 4 + meta.len() + 8 + store.len() + 4);
    raw.extend_from_slice(MAGIC);
    raw.push(VERSION);
    raw.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    raw.extend_from_slice(meta);
    raw.extend_from_slice(&(store.len() as u64).to_le_bytes());
    raw.extend_from_slice(store);
    let crc = crc32c::crc32c(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(raw.len() / 2 + 64));
    enc.write_all(&raw).map_err(|e| ArchiveError::Compression(e.to_string()))?;
    enc.into_inner().map_err(|e| ArchiveError::Compression(e.to_string()))
}

/// The `(meta, store)` of an archive; any damage or truncation is an error and nothing is
/// returned.
pub fn decode(archive: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ArchiveError> {
    let mut raw = Vec::new();
    snap::read::FrameDecoder::new(archive)
        .read_to_end(&mut raw)
        .map_err(|e| ArchiveError::Compression(e.to_string()))?;
    const FIXED: usize = 4 + 1 + 4;
    if raw.len() < FIXED + 8 + 4 {
        return Err(ArchiveError::Invalid("too short"));
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(ArchiveError::Invalid("checksum mismatch (damaged or truncated)"));
    }
    if &body[..4] != MAGIC {
        return Err(ArchiveError::Invalid("bad magic"));
    }
    if body[4] != VERSION {
        return Err(ArchiveError::Invalid("unsupported version"));
    }
    let meta_len = u32::from_le_bytes([body[5], body[6], body[7], body[8]]) as usize;
    let store_at = FIXED.checked_add(meta_len).ok_or(ArchiveError::Invalid("bad length"))?;
    if body.len() < store_at + 8 {
        return Err(ArchiveError::Invalid("bad metadata length"));
    }
    let mut len = [0; 8];
    len.copy_from_slice(&body[store_at..store_at + 8]);
    let store_len = u64::from_le_bytes(len);
    if (body.len() - store_at - 8) as u64 != store_len {
        return Err(ArchiveError::Invalid("bad store length"));
    }
    Ok((body[FIXED..store_at].to_vec(), body[store_at + 8..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let store: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let a = encode(br#"{"x":1}"#, &store).unwrap();
        let (meta, back) = decode(&a).unwrap();
        assert_eq!(meta, br#"{"x":1}"#);
        assert_eq!(back, store);
    }

    #[test]
    fn every_truncation_and_any_flipped_byte_is_refused() {
        // Varied bytes: in a constant run, a flipped copy offset can decode to the same bytes,
        // which is no damage at all.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let store: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 16) as u8
            })
            .collect();
        let a = encode(br#"{"config":{}}"#, &store).unwrap();
        for cut in 0..a.len() {
            assert!(decode(&a[..cut]).is_err(), "truncated at {cut} accepted");
        }
        for at in 0..a.len() {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(decode(&b).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for g in [&b""[..], b"hello", b"\xff\x06\x00\x00sNaPpY", &[0u8; 64]] {
            assert!(decode(g).is_err());
        }
    }
}
