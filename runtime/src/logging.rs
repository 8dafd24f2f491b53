//! Log lines in nats-server's shape (`[pid] 2026/11/27 17:26:24.611774 [INF] ...`), because
//! operators' scripts and test harnesses wait for them. The level (`debug`, `trace`), the time
//! stamps (`logtime`, `logtime_utc`) and the file (`log_file`) change on a configuration
//! reload, and SIGUSR1 reopens the file, as in nats-server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use fjord_core::proto::ClientOp;
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

struct NatsFormat {
    pid: u32,
    time: Arc<TimeSwitches>,
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
        if self.time.logtime.load(Ordering::Relaxed) {
            write!(w, "{} ", timestamp(self.time.utc.load(Ordering::Relaxed)))?;
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

/// What the log writes and where, as the configuration says; a reload changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    /// `--logtime_utc`: UTC instead of the local time zone (nats-server's default is local).
    pub logtime_utc: bool,
    /// `-l`/`log_file`: appended to; None = stderr.
    pub file: Option<PathBuf>,
}

impl LogSettings {
    fn level(&self) -> LevelFilter {
        if self.trace {
            LevelFilter::TRACE
        } else if self.debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        }
    }
}

/// Where log lines go: swapped in place by a reload (a new `log_file`) or SIGUSR1 (reopen).
enum Target {
    Stderr,
    File(std::fs::File),
}

/// The formatter's switches, read per line; atomics so a reload flips them without a lock.
struct TimeSwitches {
    logtime: AtomicBool,
    utc: AtomicBool,
}

/// The handles a running server changes its logging through.
struct Control {
    level: reload::Handle<LevelFilter, Registry>,
    time: Arc<TimeSwitches>,
    target: Arc<Mutex<Target>>,
    /// The settings in force, so a reload applies only what changed.
    current: Mutex<LogSettings>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Hands the formatted line to the current target. tracing-subscriber formats a whole event
/// into a buffer before writing it, so each line is one `write` under the lock and lines from
/// different threads never interleave.
#[derive(Clone)]
struct SwitchWriter(Arc<Mutex<Target>>);

struct LockedTarget<'a>(std::sync::MutexGuard<'a, Target>);

impl Write for LockedTarget<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *self.0 {
            Target::Stderr => std::io::stderr().write(buf),
            Target::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *self.0 {
            Target::Stderr => std::io::stderr().flush(),
            Target::File(f) => f.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for SwitchWriter {
    type Writer = LockedTarget<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        // A thread that panicked mid-write leaves a usable file behind; keep logging.
        LockedTarget(self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

fn open_target(file: Option<&Path>) -> std::io::Result<Target> {
    Ok(match file {
        Some(path) => {
            Target::File(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        }
        None => Target::Stderr,
    })
}

/// Installs the global subscriber: stderr, or the `-l` file (appended to). The level, the
/// time stamp and the file stay changeable through [`apply`] and [`reopen`].
pub fn init(settings: &LogSettings) -> std::io::Result<()> {
    let target = Arc::new(Mutex::new(open_target(settings.file.as_deref())?));
    let time = Arc::new(TimeSwitches {
        logtime: AtomicBool::new(settings.logtime),
        utc: AtomicBool::new(settings.logtime_utc),
    });
    let format = NatsFormat { pid: std::process::id(), time: time.clone() };
    let (level, handle) = reload::Layer::new(settings.level());
    let output = tracing_subscriber::fmt::layer()
        .event_format(format)
        .with_writer(SwitchWriter(target.clone()));
    tracing_subscriber::registry().with(level).with(output).init();
    let control = Control { level: handle, time, target, current: Mutex::new(settings.clone()) };
    // init runs once per process; a second call would have failed in `.init()` above.
    let _ = CONTROL.set(control);
    Ok(())
}

/// A logging change a reload has prepared: the new file is already open, so committing it
/// cannot fail.
pub struct LogChange {
    settings: LogSettings,
    target: Option<Target>,
    /// What changed, as `name = value`, for the `Reloaded:` lines.
    pub changed: Vec<String>,
}

/// Prepares reloaded logging settings (level, time stamps, file), as nats-server reloads them
/// on SIGHUP. A new file that cannot be opened is an error, and nothing has changed.
pub fn prepare(new: &LogSettings) -> Result<LogChange, String> {
    let current = match CONTROL.get() {
        Some(control) => control.current.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        None => new.clone(),
    };
    let target = if new.file != current.file {
        Some(open_target(new.file.as_deref()).map_err(|e| {
            let name = new.file.as_deref().map_or("stderr".into(), |p| p.display().to_string());
            format!("cannot open log file {name}: {e}")
        })?)
    } else {
        None
    };
    let mut changed = Vec::new();
    let mut note = |name: &str, was: bool, now: bool| {
        if was != now {
            changed.push(format!("{name} = {now}"));
        }
    };
    note("debug", current.debug, new.debug);
    note("trace", current.trace, new.trace);
    note("logtime", current.logtime, new.logtime);
    note("logtime_utc", current.logtime_utc, new.logtime_utc);
    if new.file != current.file {
        let name = new.file.as_deref().map_or(String::new(), |p| p.display().to_string());
        changed.push(format!("log_file = {name}"));
    }
    Ok(LogChange { settings: new.clone(), target, changed })
}

impl LogChange {
    /// Puts the new settings in force: lines logged from here on follow them.
    pub fn commit(self) {
        let Some(control) = CONTROL.get() else {
            return;
        };
        let mut current = control.current.lock().unwrap_or_else(|p| p.into_inner());
        if self.settings.level() != current.level() {
            // Fails only if the subscriber is gone, when there is nothing left to change.
            let _ = control.level.reload(self.settings.level());
        }
        control.time.logtime.store(self.settings.logtime, Ordering::Relaxed);
        control.time.utc.store(self.settings.logtime_utc, Ordering::Relaxed);
        if let Some(target) = self.target {
            *control.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
        }
        *current = self.settings;
    }
}

/// SIGUSR1: reopens the log file under its name, so a log rotator can move the old one away.
/// Returns false when logging to stderr, which has nothing to reopen.
pub fn reopen() -> std::io::Result<bool> {
    let Some(control) = CONTROL.get() else {
        return Ok(false);
    };
    let current = control.current.lock().unwrap_or_else(|p| p.into_inner());
    let Some(path) = current.file.as_deref() else {
        return Ok(false);
    };
    let target = open_target(Some(path))?;
    *control.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    Ok(true)
}

/// A client's op as nats-server traces it (`<<- [PUB foo 2]`), with the CONNECT's secrets
/// (`pass`, `auth_token`) redacted so a trace log does not leak credentials.
pub struct TracedOp<'a, 'b>(pub &'a ClientOp<'b>);

impl std::fmt::Display for TracedOp<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self.0 {
            ClientOp::Connect(json) => write!(f, "[CONNECT {}]", redacted_connect(json)),
            ClientOp::Pub { subject, reply, headers, payload } => {
                let reply = reply.map_or(String::new(), |r| format!(" {}", text(r)));
                match headers {
                    None => write!(f, "[PUB {}{reply} {}]", text(subject), payload.len()),
                    Some(h) => write!(
                        f,
                        "[HPUB {}{reply} {} {}]",
                        text(subject),
                        h.len(),
                        h.len() + payload.len()
                    ),
                }
            }
            ClientOp::Sub { subject, queue, sid } => {
                let queue = queue.map_or(String::new(), |q| format!(" {}", text(q)));
                write!(f, "[SUB {}{queue} {}]", text(subject), text(sid))
            }
            ClientOp::Unsub { sid, max } => match max {
                Some(max) => write!(f, "[UNSUB {} {max}]", text(sid)),
                None => write!(f, "[UNSUB {}]", text(sid)),
            },
            ClientOp::Ping => f.write_str("[PING]"),
            ClientOp::Pong => f.write_str("[PONG]"),
            ClientOp::Info(json) => write!(f, "[INFO {}]", text(json)),
            ClientOp::Ok => f.write_str("[+OK]"),
        }
    }
}

/// The CONNECT JSON with secret values replaced; JSON that does not decode is not printed
/// (it may hold a password all the same).
fn redacted_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut map)) => {
            for key in ["pass", "auth_token"] {
                if let Some(v) = map.get_mut(key) {
                    *v = serde_json::Value::String("[REDACTED]".into());
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        _ => "<not JSON>".to_string(),
    }
}

/// For errors before logging is set up.
pub fn early_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "fjord: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_trace_in_nats_server_shape() {
        let pub_op =
            ClientOp::Pub { subject: b"a.b", reply: Some(b"r"), headers: None, payload: b"hi" };
        assert_eq!(TracedOp(&pub_op).to_string(), "[PUB a.b r 2]");
        let sub = ClientOp::Sub { subject: b"a", queue: Some(b"q"), sid: b"1" };
        assert_eq!(TracedOp(&sub).to_string(), "[SUB a q 1]");
        let hpub = ClientOp::Pub {
            subject: b"a",
            reply: None,
            headers: Some(b"NATS/1.0\r\n\r\n"),
            payload: b"x",
        };
        assert_eq!(TracedOp(&hpub).to_string(), "[HPUB a 12 13]");
    }

    #[test]
    fn connect_secrets_are_redacted() {
        let op = ClientOp::Connect(br#"{"user":"u","pass":"secret","auth_token":"tok"}"#);
        let line = TracedOp(&op).to_string();
        assert!(!line.contains("secret") && !line.contains("tok\""), "{line}");
        assert!(line.contains("\"user\":\"u\"") && line.contains("[REDACTED]"), "{line}");
        let bad = ClientOp::Connect(b"{\"pass\":\"secret\"");
        assert!(!TracedOp(&bad).to_string().contains("secret"));
    }
}
