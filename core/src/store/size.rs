//! What one message counts for in a stream's bytes: `state.bytes`, the `max_bytes` limit and
//! everything derived from them (purge answers, `/jsz`, KV and object store status).
//!
//! nats-server counts a message by the size of the record its store keeps, not by its
//! subject, headers and payload alone, and the two storage types keep different records.
//! Clients see those numbers (and a `max_bytes` stream keeps exactly as many messages as fit
//! them), so fjord uses nats-server's figures, not the size of its own records.

/// A message in a file stream: nats-server's file record, which is a length (4 bytes),
/// sequence (8), timestamp (8), subject length (2), the subject, a header length (4, only when
/// there are headers) and the headers, the payload, and a checksum (8).
pub fn file_msg_size(subject_len: usize, headers_len: usize, payload_len: usize) -> u64 {
    const FIXED: u64 = 4 + 8 + 8 + 2 + 8;
    let headers = if headers_len == 0 { 0 } else { 4 + headers_len as u64 };
    FIXED + subject_len as u64 + headers + payload_len as u64
}

/// A message in a memory stream: subject, headers and payload plus 16 bytes (nats-server's
/// sequence and timestamp).
pub fn mem_msg_size(subject_len: usize, headers_len: usize, payload_len: usize) -> u64 {
    16 + subject_len as u64 + headers_len as u64 + payload_len as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures read off nats-server 2.15.1's stream info: three 5-byte messages on `file.a`
    /// make 123 bytes, one more with the 22-byte header block `NATS/1.0\r\nFoo: bar\r\n\r\n`
    /// adds 67, and one with an empty header block (12 bytes) and no payload adds 52; on
    /// `memory.a` the same messages make 87, then 51 and 36 more.
    #[test]
    fn sizes_match_nats_server() {
        assert_eq!(3 * file_msg_size(6, 0, 5), 123);
        assert_eq!(file_msg_size(6, 22, 5), 67);
        assert_eq!(file_msg_size(6, 12, 0), 52);
        assert_eq!(3 * mem_msg_size(8, 0, 5), 87);
        assert_eq!(mem_msg_size(8, 22, 5), 51);
        assert_eq!(mem_msg_size(8, 12, 0), 36);
    }
}
