//! Each node's clock: simulated time seen through a per-node drift (and later, jumps of the
//! wall clock). The monotonic [`Instant`] core receives never goes back.

use fjord_core::time::Instant;

#[derive(Clone, Debug)]
pub struct NodeClock {
    /// Parts per million faster (positive) or slower than simulated time.
    drift_ppm: i64,
    /// Where this node's monotonic clock starts (an arbitrary origin, as on a real machine).
    origin: u64,
}

const MILLION: i128 = 1_000_000;

impl NodeClock {
    pub fn new(drift_ppm: i64, origin: u64) -> Self {
        NodeClock { drift_ppm: drift_ppm.clamp(-100_000, 100_000), origin }
    }

    /// The node's monotonic time at simulated time `sim_nanos`.
    pub fn local(&self, sim_nanos: u64) -> Instant {
        let scaled = i128::from(sim_nanos) * (MILLION + i128::from(self.drift_ppm)) / MILLION;
        Instant(self.origin.saturating_add(scaled.clamp(0, i128::from(u64::MAX)) as u64))
    }

    /// The earliest simulated time at which the node's clock reads `local` or later.
    pub fn sim_time_for(&self, local: Instant) -> u64 {
        let since = i128::from(local.0.saturating_sub(self.origin));
        let rate = MILLION + i128::from(self.drift_ppm);
        let mut sim = (since * MILLION + rate - 1) / rate;
        // Integer division may land one short; step until the clock reads at least `local`.
        while self.local(sim.clamp(0, i128::from(u64::MAX)) as u64) < local {
            sim += 1;
        }
        sim.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_the_earliest_time() {
        for drift in [-200, 0, 13, 200] {
            let c = NodeClock::new(drift, 5_000);
            for local in [5_000u64, 5_001, 1_000_000_007, 77_777_777_777] {
                let t = c.sim_time_for(Instant(local));
                assert!(c.local(t) >= Instant(local));
                assert!(t == 0 || c.local(t - 1) < Instant(local));
            }
        }
    }
}
