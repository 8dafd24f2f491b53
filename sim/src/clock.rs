//! Each node's clocks: simulated time seen through a per-node drift. Two readings, as on a real
//! machine: the monotonic [`Instant`] core receives for timers never goes back; the wall clock
//! ([`UnixNanos`], what message timestamps and `max_age` read) runs at the same drifted rate
//! but can jump forward or backward (an operator or NTP stepping it), and the jumps leave the
//! monotonic clock untouched.

use fjord_core::time::{Instant, UnixNanos};

#[derive(Clone, Debug)]
pub struct NodeClock {
    /// Parts per million faster (positive) or slower than simulated time.
    drift_ppm: i64,
    /// Where this node's monotonic clock starts (an arbitrary origin, as on a real machine).
    origin: u64,
    /// The wall clock's reading when the monotonic clock read `origin`, plus every jump so far.
    wall_offset: i64,
}

/// A plausible Unix time (late 2023) for the wall clock's start, so timestamps look real.
pub const WALL_ORIGIN: i64 = 1_700_000_000_000_000_000;

const MILLION: i128 = 1_000_000;

impl NodeClock {
    pub fn new(drift_ppm: i64, origin: u64) -> Self {
        NodeClock {
            drift_ppm: drift_ppm.clamp(-100_000, 100_000),
            origin,
            wall_offset: WALL_ORIGIN,
        }
    }

    /// The node's wall clock at simulated time `sim_nanos`: its monotonic time since the
    /// origin, plus the wall origin and any jumps. It may go backward after a jump.
    pub fn wall(&self, sim_nanos: u64) -> UnixNanos {
        let since = self.local(sim_nanos).0.saturating_sub(self.origin);
        UnixNanos(self.wall_offset.saturating_add(since.min(i64::MAX as u64) as i64))
    }

    /// Steps the wall clock by `delta` nanoseconds (negative: backward). The monotonic clock,
    /// and so every timer, is unaffected.
    pub fn jump_wall(&mut self, delta: i64) {
        self.wall_offset = self.wall_offset.saturating_add(delta);
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
    fn wall_jumps_leave_the_monotonic_clock_alone() {
        let mut c = NodeClock::new(100, 42);
        let (mono, wall) = (c.local(1_000_000), c.wall(1_000_000));
        assert_eq!(wall.0, WALL_ORIGIN + (mono.0 - 42) as i64);
        c.jump_wall(-5_000_000_000);
        assert_eq!(c.local(1_000_000), mono, "a wall jump moved the monotonic clock");
        assert_eq!(c.wall(1_000_000).0, wall.0 - 5_000_000_000);
        assert!(c.wall(2_000_000) < wall, "the wall clock went back and runs on from there");
        c.jump_wall(7_000_000_000);
        assert_eq!(c.wall(1_000_000).0, wall.0 + 2_000_000_000);
    }

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
