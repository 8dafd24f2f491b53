//! Encryption at rest for FileStore (ChaCha20-Poly1305, nats-server's `cipher: chachapoly`).
//!
//! Keys:
//! - the *store key* comes from configuration (`StoreKey::derive` of the operator's `key`
//!   string and the stream name, so streams never share one);
//! - every block gets its own random 256-bit *block key*, wrapped (sealed) by the store key
//!   into `NNNNNNNNNN.key` next to the block. The key file is written atomically and durably
//!   *before* the block is created, so no block can exist without its key.
//!
//! Records: a sealed record keeps the plain 21-byte header of `record.rs` (length, kind,
//! sequence, both CRC-32Cs) and replaces the body with `nonce[12] | AEAD(flag u8 | body) |
//! tag[16]`, with the header's kind and sequence as associated data. `flag` says whether the
//! body was snappy-compressed first: compression must come before encryption (ciphertext does
//! not compress), so an encrypted store compresses each record rather than whole sealed blocks.
//! The CRCs cover the ciphertext, so torn-tail and bit-flip handling in recovery is exactly the
//! plain store's, and damage still names its sequence. What stays visible on disk: record
//! lengths, kinds and sequences; never subjects, headers, payloads or timestamps. The checkpoint
//! (which lists subjects) is sealed whole by the store key.
//!
//! Why random nonces under per-block keys, not counters: a nonce must never repeat under one
//! key, and the log rewrites bytes in ways a position- or counter-derived nonce would repeat
//! under: recovery truncates a torn tail and the next append lands at the same offset; a failed
//! append is cut back and retried there; `erase` rewrites a record in place; a block whose
//! directory entry was lost in a crash is created again under the same number; compaction drops
//! blocks and makes new ones. A counter would have to be persisted and synced ahead of every
//! write to survive all of that. A fresh random 96-bit nonce per sealing is independent of all
//! of it, and a random key per block caps how many random nonces any one key ever sees to one
//! block's records (thousands), far below the 2^32 where random 96-bit nonces start to risk a
//! collision. The one requirement: `Encryption::seed` must be fresh randomness on every open
//! (the runtime draws it from the OS); core itself has no ambient randomness.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::record::{self, Body, Header, RecordError, HEADER_LEN, MAX_BODY_LEN};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes sealing adds to a record body: nonce, compression flag, tag.
pub const OVERHEAD: usize = NONCE_LEN + 1 + TAG_LEN;

const KEY_MAGIC: &[u8; 4] = b"FJBK";
const FILE_MAGIC: &[u8; 4] = b"FJCE";
const CHECK_MAGIC: &[u8; 4] = b"FJKC";
/// `"FJKC" | nonce | tag of the empty message | crc32c u32`.
const CHECK_LEN: usize = 4 + NONCE_LEN + TAG_LEN + 4;
const VERSION: u8 = 1;
/// `"FJBK" | version u8 | cipher u8 | block u32 | nonce | sealed block key | tag | crc32c u32`.
pub const KEY_FILE_LEN: usize = 4 + 1 + 1 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN + 4;
const FLAG_RAW: u8 = 0;
const FLAG_SNAPPY: u8 = 1;

/// A stream's store key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; KEY_LEN]);

impl StoreKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        StoreKey(bytes)
    }

    /// HKDF-SHA256 (RFC 5869) of the configured secret, with `context` (the stream's name) as
    /// the info string: one configured `key` gives every stream a different store key.
    pub fn derive(secret: &[u8], context: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"fjord store key v1"), secret);
        let mut okm = [0u8; KEY_LEN];
        // Only lengths above 255 * 32 bytes fail; this one is a constant 32.
        hk.expand(context, &mut okm).expect("HKDF-SHA256 yields 32 bytes");
        StoreKey(okm)
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(redacted)")
    }
}

/// The AEAD in use (the one nats-server calls `chachapoly`; the only one so far).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cipher {
    #[default]
    ChaChaPoly,
}

impl Cipher {
    /// The configuration name, as nats-server spells it.
    pub fn parse(name: &str) -> Option<Cipher> {
        match name.to_ascii_lowercase().as_str() {
            "chachapoly" | "chacha" | "chacha20-poly1305" => Some(Cipher::ChaChaPoly),
            _ => None,
        }
    }

    fn id(self) -> u8 {
        match self {
            Cipher::ChaChaPoly => 1,
        }
    }
}

/// A FileStore's encryption settings.
#[derive(Clone, Debug)]
pub struct Encryption {
    pub key: StoreKey,
    pub cipher: Cipher,
    /// Seeds the store's CSPRNG (block keys and nonces). Must be fresh from the OS on every
    /// open: see the module doc.
    pub seed: [u8; 32],
}

/// What a driver configures once for all its file stores: the operator's secret, the cipher,
/// and fresh randomness for this process, from which each store gets its own key and seed.
#[derive(Clone)]
pub struct EncryptionConfig {
    secret: Vec<u8>,
    cipher: Cipher,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig").field("cipher", &self.cipher).finish_non_exhaustive()
    }
}

impl EncryptionConfig {
    /// `seed` must be fresh randomness from the OS for this process.
    pub fn new(secret: &[u8], cipher: Cipher, seed: [u8; 32]) -> Self {
        EncryptionConfig { secret: secret.to_vec(), cipher, rng: ChaCha20Rng::from_seed(seed) }
    }

    /// One store's settings: a key derived for `context` (the stream's name) and a seed of its
    /// own, drawn fresh for every open.
    pub fn for_store(&mut self, context: &[u8]) -> Encryption {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Encryption { key: StoreKey::derive(&self.secret, context), cipher: self.cipher, seed }
    }
}

/// Why a block's key file cannot give its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileError {
    /// Short, bad magic or failed checksum: the file is damaged, the block is unreadable.
    Damaged,
    /// Intact, but the store key does not open it: the configured key is not this store's.
    WrongKey,
}

/// One block's data key.
#[derive(Clone)]
pub struct BlockKey(ChaCha20Poly1305);

/// The store key and the CSPRNG a FileStore seals with.
pub struct Crypt {
    store: ChaCha20Poly1305,
    cipher: Cipher,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt").field("cipher", &self.cipher).finish_non_exhaustive()
    }
}

fn key_aad(cipher: u8, block: u32) -> [u8; 10] {
    let mut aad = [0; 10];
    aad[..4].copy_from_slice(KEY_MAGIC);
    aad[4] = VERSION;
    aad[5] = cipher;
    aad[6..].copy_from_slice(&block.to_le_bytes());
    aad
}

fn record_aad(kind: u8, seq: u64) -> [u8; 9] {
    let mut aad = [0; 9];
    aad[0] = kind;
    aad[1..].copy_from_slice(&seq.to_le_bytes());
    aad
}

impl Crypt {
    pub fn new(enc: &Encryption) -> Self {
        Crypt {
            store: ChaCha20Poly1305::new(Key::from_slice(&enc.key.0)),
            cipher: enc.cipher,
            rng: ChaCha20Rng::from_seed(enc.seed),
        }
    }

    pub fn nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut n = [0; NONCE_LEN];
        self.rng.fill_bytes(&mut n);
        n
    }

    /// A fresh key for `block`, and the key file that keeps it (sealed by the store key, bound
    /// to the block number so a key file cannot be moved to another block).
    pub fn new_block_key(&mut self, block: u32) -> (BlockKey, Vec<u8>) {
        let mut key = [0u8; KEY_LEN];
        self.rng.fill_bytes(&mut key);
        let nonce = self.nonce();
        let aad = key_aad(self.cipher.id(), block);
        let mut out = Vec::with_capacity(KEY_FILE_LEN);
        out.extend_from_slice(&aad);
        out.extend_from_slice(&nonce);
        let at = out.len();
        out.extend_from_slice(&key);
        let tag = self
            .store
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[at..])
            .expect("ChaCha20-Poly1305 seals any buffer under 256 GiB");
        out.extend_from_slice(&tag);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        (BlockKey(ChaCha20Poly1305::new(Key::from_slice(&key))), out)
    }

    /// The key a key file keeps. The checksum tells damage (`Damaged`) from a key file that is
    /// intact but sealed by another store key (`WrongKey`).
    pub fn open_key_file(&self, block: u32, file: &[u8]) -> Result<BlockKey, KeyFileError> {
        if file.len() != KEY_FILE_LEN {
            return Err(KeyFileError::Damaged);
        }
        let (body, crc) = file.split_at(KEY_FILE_LEN - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(KeyFileError::Damaged);
        }
        if body[..10] != key_aad(self.cipher.id(), block) {
            // Intact yet naming another block, version or cipher: not a key for this block.
            return Err(KeyFileError::Damaged);
        }
        let nonce = &body[10..10 + NONCE_LEN];
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&body[10 + NONCE_LEN..10 + NONCE_LEN + KEY_LEN]);
        let tag = &body[10 + NONCE_LEN + KEY_LEN..];
        self.store
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &body[..10],
                &mut key,
                Tag::from_slice(tag),
            )
            .map_err(|_| KeyFileError::WrongKey)?;
        Ok(BlockKey(ChaCha20Poly1305::new(Key::from_slice(&key))))
    }

    /// The store's key check file: the store key's tag over nothing, so that a wrong key is
    /// refused even by a store that holds no block yet (and so no block key file to test).
    pub fn key_check(&mut self) -> Vec<u8> {
        let nonce = self.nonce();
        let mut out = Vec::with_capacity(CHECK_LEN);
        out.extend_from_slice(CHECK_MAGIC);
        out.extend_from_slice(&nonce);
        let tag = self
            .store
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), CHECK_MAGIC, &mut [])
            .expect("ChaCha20-Poly1305 seals an empty buffer");
        out.extend_from_slice(&tag);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Whether a key check file was made by this store key (`WrongKey` if intact but not).
    pub fn verify_key_check(&self, file: &[u8]) -> Result<(), KeyFileError> {
        if file.len() != CHECK_LEN || &file[..4] != CHECK_MAGIC {
            return Err(KeyFileError::Damaged);
        }
        let (body, crc) = file.split_at(CHECK_LEN - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(KeyFileError::Damaged);
        }
        self.store
            .decrypt_in_place_detached(
                Nonce::from_slice(&body[4..4 + NONCE_LEN]),
                CHECK_MAGIC,
                &mut [],
                Tag::from_slice(&body[4 + NONCE_LEN..]),
            )
            .map_err(|_| KeyFileError::WrongKey)
    }

    /// Seals a whole small file (the checkpoint) under the store key:
    /// `"FJCE" | nonce | ciphertext | tag`.
    pub fn seal_file(&mut self, plain: &[u8]) -> Vec<u8> {
        let nonce = self.nonce();
        let mut out = Vec::with_capacity(4 + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .store
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                FILE_MAGIC,
                &mut out[4 + NONCE_LEN..],
            )
            .expect("ChaCha20-Poly1305 seals any buffer under 256 GiB");
        out.extend_from_slice(&tag);
        out
    }

    /// The plain bytes of a sealed file; `None` if it is not one, damaged, or another key's.
    pub fn open_file(&self, file: &[u8]) -> Option<Vec<u8>> {
        if file.len() < 4 + NONCE_LEN + TAG_LEN || &file[..4] != FILE_MAGIC {
            return None;
        }
        let (head, tag) = file.split_at(file.len() - TAG_LEN);
        let mut plain = head[4 + NONCE_LEN..].to_vec();
        self.store
            .decrypt_in_place_detached(
                Nonce::from_slice(&head[4..4 + NONCE_LEN]),
                FILE_MAGIC,
                &mut plain,
                Tag::from_slice(tag),
            )
            .ok()?;
        Some(plain)
    }
}

/// Seals a plain record (as `record::encode` makes it) into `out`, replacing `out`'s contents.
/// With `compress`, the body is snappy-compressed first when that makes it smaller. The nonce
/// must be fresh (`Crypt::nonce`).
pub fn seal_record(
    key: &BlockKey,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
    compress: bool,
    out: &mut Vec<u8>,
) {
    let (kind, seq) = (plain[4], u64::from_le_bytes(plain[5..13].try_into().unwrap_or([0; 8])));
    let body = &plain[HEADER_LEN..];
    let packed = if compress && body.len() > 64 {
        snap::raw::Encoder::new().compress_vec(body).ok().filter(|p| p.len() + 8 < body.len())
    } else {
        None
    };
    let mut inner = Vec::with_capacity(1 + body.len());
    match &packed {
        Some(p) => {
            inner.push(FLAG_SNAPPY);
            inner.extend_from_slice(p);
        }
        None => {
            inner.push(FLAG_RAW);
            inner.extend_from_slice(body);
        }
    }
    seal_inner(key, nonce, kind, seq, &inner, out);
}

/// Seals `inner` (`flag | body`, as `seal_record` builds it) as the body of a record of `kind`
/// and `seq`, replacing `out`'s contents. Public for the fuzzer, which seals arbitrary
/// plaintext to reach the decoder behind the AEAD.
pub fn seal_inner(
    key: &BlockKey,
    nonce: [u8; NONCE_LEN],
    kind: u8,
    seq: u64,
    inner: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(&nonce);
    let sealed_from = out.len();
    out.extend_from_slice(inner);
    let tag = key
        .0
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &record_aad(kind, seq),
            &mut out[sealed_from..],
        )
        .expect("ChaCha20-Poly1305 seals any buffer under 256 GiB");
    out.extend_from_slice(&tag);
    record::frame(out, 0, kind, seq);
}

/// Decodes a sealed record at the start of `buf`: both checksums (unless `verify` is false,
/// the canary), then authenticated decryption into `scratch`, which the body borrows. A body
/// that fails authentication is `BadBody`, reported exactly like a checksum failure: tampered
/// ciphertext is corruption.
pub fn open_record<'a>(
    key: &BlockKey,
    buf: &[u8],
    verify: bool,
    scratch: &'a mut Vec<u8>,
) -> Result<(Header, Body<'a>), RecordError> {
    let header = record::decode_header(buf)?;
    let Some(body) = buf.get(HEADER_LEN..header.record_len()) else {
        return Err(RecordError::Incomplete);
    };
    if verify && crc32c::crc32c(body) != header.body_crc {
        return Err(RecordError::BadBody);
    }
    if body.len() < OVERHEAD {
        return Err(RecordError::BadBody);
    }
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
    scratch.clear();
    scratch.extend_from_slice(sealed);
    key.0
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            &record_aad(header.kind as u8, header.seq),
            scratch,
            Tag::from_slice(tag),
        )
        .map_err(|_| RecordError::BadBody)?;
    match scratch[0] {
        FLAG_RAW => {}
        FLAG_SNAPPY => {
            let packed = &scratch[1..];
            // Bounded before anything is allocated for it.
            let n = snap::raw::decompress_len(packed).map_err(|_| RecordError::Malformed)?;
            if n > MAX_BODY_LEN as usize {
                return Err(RecordError::Malformed);
            }
            let mut plain = vec![0u8; n + 1];
            snap::raw::Decoder::new()
                .decompress(packed, &mut plain[1..])
                .map_err(|_| RecordError::Malformed)?;
            *scratch = plain;
        }
        _ => return Err(RecordError::Malformed),
    }
    Ok((header, record::decode_body(header.kind, &scratch[1..])?))
}

/// Decodes the record at the start of `buf` with the block's key if it has one.
pub fn decode<'a>(
    key: Option<&BlockKey>,
    buf: &'a [u8],
    verify: bool,
    scratch: &'a mut Vec<u8>,
) -> Result<(Header, Body<'a>), RecordError> {
    match key {
        Some(key) => open_record(key, buf, verify, scratch),
        None => record::decode(buf, verify),
    }
}

/// The plain body length of a sealed record `record_len` long that was not compressed (an
/// erased record must keep its record's exact length).
pub fn plain_body_len(record_len: u32) -> u32 {
    record_len.saturating_sub((HEADER_LEN + OVERHEAD) as u32)
}
