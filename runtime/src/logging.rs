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
            write!(w, "{} ", timestamp())?;
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

/// UTC wall-clock time as `YYYY/MM/DD hh:mm:ss.micros` (civil-from-days, no date crate needed).
fn timestamp() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Installs the global subscriber: stderr, or the `-l` file (appended to).
pub fn init(debug: bool, trace: bool, logtime: bool, file: Option<&Path>) -> std::io::Result<()> {
    let level = if trace {
        Level::TRACE
    } else if debug {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let format = NatsFormat { pid: std::process::id(), logtime };
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
