//! The JetStream pull consumer's event soup (`fuzz/src/consumer.rs`, shared with
//! `fjord-fuzz consumer <seed>`), with every decision drawn from libFuzzer's bytes instead of
//! a seeded generator, so coverage guidance steers the sequence of events. A broken invariant
//! panics with the soup's message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::RngCore;

#[path = "../../src/consumer.rs"]
#[allow(dead_code)]
mod consumer;

/// Reads the input as a stream of random words; zeros once it runs out (the soup then takes
/// its first choice everywhere and ends, since step counts are drawn too).
struct Bytes<'a>(&'a [u8]);

impl RngCore for Bytes<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let n = dst.len().min(self.0.len());
        dst[..n].copy_from_slice(&self.0[..n]);
        dst[n..].fill(0);
        self.0 = &self.0[n..];
    }
}

fuzz_target!(|data: &[u8]| {
    if let Err(why) = consumer::soup(&mut Bytes(data)) {
        panic!("{why}");
    }
});
