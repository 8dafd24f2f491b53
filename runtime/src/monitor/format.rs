//! Times and durations printed the way nats-server's monitoring JSON prints them, because
//! dashboards and exporters parse these strings: times are Go's `time.RFC3339Nano` (trailing
//! zeros of the fraction trimmed), `rtt` is Go's `Duration.String()`, and `uptime`/`idle` are
//! nats-server's own whole-second format with days and years.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-27T17:46:38.36594874Z` (UTC; a zero fraction is left out, as Go does).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    // Times before 1970 cannot come from this process's clock; print the epoch rather than fail.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    out.push_str(&fraction(u128::from(since.subsec_nanos()), 9));
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm (no date crate
/// needed for one conversion).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `.` and the `digits`-wide fraction with trailing zeros trimmed; empty when zero.
fn fraction(value: u128, digits: usize) -> String {
    if value == 0 {
        return String::new();
    }
    let text = format!("{value:0digits$}");
    format!(".{}", text.trim_end_matches('0'))
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `761µs`, `1.5ms`, `2m0s`, `1h2m3.5s`.
pub fn go_duration(d: Duration) -> String {
    let n = d.as_nanos();
    match n {
        0 => "0s".to_string(),
        1..=999 => format!("{n}ns"),
        1_000..=999_999 => format!("{}{}µs", n / 1_000, fraction(n % 1_000, 3)),
        1_000_000..=999_999_999 => format!("{}{}ms", n / 1_000_000, fraction(n % 1_000_000, 6)),
        _ => {
            let secs = n / 1_000_000_000;
            let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
            let mut out = String::new();
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            out.push_str(&format!("{s}{}s", fraction(n % 1_000_000_000, 9)));
            out
        }
    }
}

/// nats-server's `myUptime`: whole seconds, with days and years: `45s`, `1m2s`, `3d4h0m1s`.
pub fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    let years = days / 365;
    if years > 0 {
        format!("{years}y{}d{}h{}m{}s", days % 365, hours % 24, mins % 60, secs % 60)
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_trimmed_nanos() {
        let t = UNIX_EPOCH + Duration::new(1_795_801_598, 365_948_740);
        assert_eq!(rfc3339_nanos(t), "2026-11-27T17:46:38.36594874Z");
        assert_eq!(
            rfc3339_nanos(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn durations_match_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_micros(761), "761µs"),
            (Duration::from_nanos(761_500), "761.5µs"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text);
        }
    }

    #[test]
    fn uptime_matches_nats_server() {
        assert_eq!(uptime(Duration::from_millis(999)), "0s");
        assert_eq!(uptime(Duration::from_secs(62)), "1m2s");
        assert_eq!(uptime(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(uptime(Duration::from_secs(3 * 86400 + 1)), "3d0h0m1s");
        assert_eq!(uptime(Duration::from_secs(366 * 86400)), "1y1d0h0m0s");
    }
}
