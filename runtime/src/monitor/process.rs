//! The process's resident memory and CPU use for `/varz` (`mem`, `cpu`), read from procfs as
//! nats-server does on Linux (`pse_linux.go`): RSS from `/proc/self/statm`, CPU time from
//! `/proc/self/stat`, turned into a percentage over the interval since the previous sample.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often the CPU percentage is recomputed: shorter intervals are mostly noise.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Resident set size in bytes; 0 when procfs cannot be read (not Linux, or restricted).
pub fn rss_bytes() -> i64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: i64 = text.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * page_size()
}

fn page_size() -> i64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as i64
    } else {
        4096
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User plus system CPU time of this process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' come state (3) ... utime (14) and stime (15): skip 11 to reach utime.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// Remembers the previous sample so `cpu` is a recent percentage, not a lifetime average.
pub struct CpuSampler {
    state: Mutex<Sample>,
}

struct Sample {
    at: Instant,
    cpu_seconds: f64,
    percent: f64,
}

impl Default for CpuSampler {
    fn default() -> Self {
        CpuSampler {
            state: Mutex::new(Sample {
                at: Instant::now(),
                cpu_seconds: cpu_seconds().unwrap_or(0.0),
                percent: 0.0,
            }),
        }
    }
}

impl CpuSampler {
    /// Percent of one core used since the last sample (recomputed at most once a second),
    /// rounded to two decimals like nats-server's.
    pub fn percent(&self) -> f64 {
        let mut state = self.state.lock();
        let elapsed = state.at.elapsed();
        if elapsed >= SAMPLE_EVERY {
            if let Some(now) = cpu_seconds() {
                let used = (now - state.cpu_seconds).max(0.0);
                state.percent = (used / elapsed.as_secs_f64() * 10_000.0).round() / 100.0;
                state.cpu_seconds = now;
                state.at = Instant::now();
            }
        }
        state.percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_is_readable_here() {
        assert!(rss_bytes() > 0);
        assert!(cpu_seconds().is_some());
    }
}
