//! Log lines in nats-server's shape (`[pid] 2026/11/27 17:26:24.611774 [INF] ...`), because
//! operators' scripts and test harnesses wait for them.

use std::io::Write;
use std::path::Path;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct NatsFormat {
    pid: u32,
    logtime: bool,
    /// `--logtime_utc`: UTC instead of the local time zone (nats-server's default is local).
    utc: bool,
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(w, "[{}] ", self.pid)?;
        if self.logtime {
            write!(w, "{} ", timestamp(self.utc))?;
        }
        let level = match *event.metadata().level() {
            Level::ERROR => "[ERR]",
            Level::WARN => "[WRN]",
            Level::INFO => "[INF]",
            Level::DEBUG => "[DBG]",
            Level::TRACE => "[TRC]",
        };
        write!(w, "{level} ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Wall-clock time as `YYYY/MM/DD hh:mm:ss.micros`, local or UTC.
fn timestamp(utc: bool) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64 + if utc { 0 } else { local_offset_seconds(now.as_secs()) };
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (year, month, day) = crate::monitor::format::civil_from_days(days);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// The local time zone's offset from UTC at `unix_secs`, from the C library (which reads `TZ`
/// and the zone database); 0 if it cannot tell.
fn local_offset_seconds(unix_secs: u64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed `tm` we own; `t` outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// Installs the global subscriber: stderr, or the `-l` file (appended to).
pub fn init(
    debug: bool,
    trace: bool,
    logtime: bool,
    logtime_utc: bool,
    file: Option<&Path>,
) -> std::io::Result<()> {
    let level = if trace {
        Level::TRACE
    } else if debug {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let format = NatsFormat { pid: std::process::id(), logtime, utc: logtime_utc };
    let builder = tracing_subscriber::fmt().with_max_level(level).event_format(format);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            let file = std::sync::Mutex::new(file);
            builder.with_writer(file).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// For errors before logging is set up.
pub fn early_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "fjord: {msg}");
}
