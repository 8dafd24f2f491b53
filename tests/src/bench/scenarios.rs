//! The benchmark scenarios. Every client runs on its own OS thread with a blocking socket
//! (the machine has few cores; no async runtime, no client-side locking).

use super::conn::{write_all_ctx, Conn, Ctx, Event, Res};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The publisher sends a PING every this many messages and, before sending the next
/// PING, waits for the PONG of the previous one (at most two intervals in flight).
/// (Settable from the command line.)
pub static PING_EVERY: AtomicU64 = AtomicU64::new(10_000);
/// Most messages the slowest subscriber may lag behind the publisher...
const WINDOW_MSGS: u64 = 256 * 1024;
/// ...and most bytes (frames as encoded on the wire), well below a 64 MiB slow-consumer limit.
const WINDOW_BYTES: u64 = 32 << 20;
/// Publisher batches are about this large (a single write each).
const BATCH_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every subscriber gets every message.
    All,
    /// Subscribers are members of one queue group: each message reaches exactly one.
    Queue,
}

#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages delivered to all subscribers together.
    pub delivered: u64,
    /// From the first message received by any subscriber to the last received by any.
    pub secs: f64,
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) delivered per second.
    pub mb_per_sec: f64,
    /// Per-member counts (queue groups) for information.
    pub min_member: u64,
    pub max_member: u64,
    /// Time the publisher spent blocked by flow control (subscriber window, PONG).
    pub pub_wait_window: Duration,
    pub pub_wait_pong: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub reqs_per_sec: f64,
}

struct SubResult {
    count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

fn unique_subject(kind: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("bench.{kind}.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Counts MSG frames until, once `drain` is set, a PONG arrives (the main thread sends the
/// PING after all expected messages arrived, so the PONG bounds any extra deliveries).
fn subscriber(mut conn: Conn, counter: &AtomicU64, drain: &AtomicBool) -> Res<SubResult> {
    let mut count = 0u64;
    let mut first = None;
    let mut last = None;
    loop {
        match conn.next_event()? {
            Event::Msg { .. } => {
                count += 1;
                if first.is_none() {
                    first = Some(conn.last_read);
                }
                last = Some(conn.last_read);
                // Publish progress at least whenever we are about to block on a read.
                if count & 1023 == 0 || conn.buffered() == 0 {
                    counter.store(count, Ordering::Relaxed);
                }
            }
            Event::Ping => {
                counter.store(count, Ordering::Relaxed);
                conn.write_all(b"PONG\r\n")?;
            }
            Event::Pong => {
                counter.store(count, Ordering::Relaxed);
                if drain.load(Ordering::Acquire) {
                    return Ok(SubResult { count, first, last });
                }
            }
            Event::Info | Event::Ok => counter.store(count, Ordering::Relaxed),
        }
    }
}

/// Publishes `n` messages of `size` bytes to `subject` in large pre-encoded batches,
/// flow-controlled by PING/PONG and by `progress()` (messages the slowest consumer has).
fn publish(
    conn: &mut Conn,
    ctx: &Ctx,
    subject: &str,
    n: u64,
    size: usize,
    window: u64,
    progress: &dyn Fn() -> u64,
) -> Res<(Duration, Duration)> {
    let mut frame = format!("PUB {subject} {size}\r\n").into_bytes();
    frame.extend_from_slice(&payload(size));
    frame.extend_from_slice(b"\r\n");
    let frame_len = frame.len();
    let per_batch = (BATCH_BYTES / frame_len).max(1) as u64;
    let batch: Vec<u8> = frame.repeat(per_batch as usize);

    let mut sent = 0u64;
    let ping_every = PING_EVERY.load(Ordering::Relaxed).max(1);
    let mut next_ping = ping_every;
    let mut ping_outstanding = false;
    let (mut wait_window, mut wait_pong) = (Duration::ZERO, Duration::ZERO);
    while sent < n {
        let k = per_batch.min(n - sent).min(next_ping - sent);
        // Bound how far the slowest subscriber lags behind.
        let mut spins = 0u32;
        let t = Instant::now();
        while sent + k > progress() + window {
            ctx.check("publisher waited for subscribers to catch up")?;
            spins += 1;
            if spins < 50 {
                thread::yield_now();
            } else {
                thread::sleep(Duration::from_micros(50));
            }
        }
        if spins > 0 {
            wait_window += t.elapsed();
        }
        conn.write_all(&batch[..k as usize * frame_len])?;
        sent += k;
        if sent == next_ping && sent < n {
            ctx.check("publishing")?;
            if ping_outstanding {
                let t = Instant::now();
                conn.wait_pong()?;
                wait_pong += t.elapsed();
            }
            conn.write_all(b"PING\r\n")?;
            ping_outstanding = true;
            next_ping += ping_every;
        }
    }
    if ping_outstanding {
        conn.wait_pong()?;
    }
    conn.flush()?;
    Ok((wait_window, wait_pong))
}

/// 1 publisher and `nsubs` subscribers on one subject (or one queue group).
pub fn throughput(
    addr: &str,
    n: u64,
    size: usize,
    nsubs: usize,
    delivery: Delivery,
    timeout: Duration,
) -> Res<Throughput> {
    let ctx = Ctx::new(timeout);
    let subject = unique_subject(if delivery == Delivery::Queue { "queue" } else { "sub" });
    let mut subs = Vec::new();
    for i in 0..nsubs {
        let mut c = Conn::connect(addr, &format!("subscriber {i}"), &ctx)?;
        let queue = (delivery == Delivery::Queue).then_some("benchq");
        c.sub(&subject, queue, 1)?;
        c.flush()?; // the SUB is registered once its PONG is back
        subs.push(c);
    }
    let mut publ = Conn::connect(addr, "publisher", &ctx)?;

    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..nsubs).map(|_| AtomicU64::new(0)).collect());
    let drain = Arc::new(AtomicBool::new(false));
    let mut clones: Vec<TcpStream> = Vec::new();
    let mut handles = Vec::new();
    for (i, c) in subs.into_iter().enumerate() {
        clones.push(c.try_clone_stream()?);
        let (ctx, counters, drain) = (ctx.clone(), counters.clone(), drain.clone());
        handles.push(thread::spawn(move || {
            let r = subscriber(c, &counters[i], &drain);
            if let Err(e) = &r {
                ctx.fail(e.clone());
            }
            r
        }));
    }

    let frame_len = format!("PUB {subject} {size}\r\n").len() as u64 + size as u64 + 2;
    let window = WINDOW_MSGS.min(WINDOW_BYTES / frame_len).max(PING_EVERY.load(Ordering::Relaxed));
    let progress = || -> u64 {
        match delivery {
            Delivery::All => counters.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap(),
            Delivery::Queue => counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        }
    };
    let mut waits = (Duration::ZERO, Duration::ZERO);
    let run = (|| -> Res<()> {
        waits = publish(&mut publ, &ctx, &subject, n, size, window, &progress)?;
        // Wait for every expected message, then drain with a PING per subscriber.
        while progress() < n {
            let counts: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            ctx.check(&format!(
                "waiting for subscribers (received {counts:?}, expected {} {})",
                n,
                if delivery == Delivery::Queue { "in total" } else { "each" }
            ))?;
            thread::sleep(Duration::from_millis(1));
        }
        drain.store(true, Ordering::Release);
        for (i, s) in clones.iter_mut().enumerate() {
            write_all_ctx(s, &mut &b"PING\r\n"[..], &ctx, &format!("subscriber {i}"))?;
        }
        Ok(())
    })();
    if let Err(e) = run {
        ctx.fail(e);
    }
    if ctx.aborted() {
        for s in &clones {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        publ.shutdown();
    }
    let results: Vec<Res<SubResult>> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err("subscriber thread panicked".into())))
        .collect();
    if let Some(e) = ctx.first_error() {
        return Err(e);
    }
    let results: Vec<SubResult> = results.into_iter().collect::<Res<_>>()?;
    let counts: Vec<u64> = results.iter().map(|r| r.count).collect();
    let delivered: u64 = counts.iter().sum();
    match delivery {
        Delivery::All => {
            if counts.iter().any(|&c| c != n) {
                return Err(format!(
                    "delivery count mismatch: each subscriber should get exactly {n}, got {counts:?}"
                ));
            }
        }
        Delivery::Queue => {
            if delivered != n {
                return Err(format!(
                    "queue group delivered {delivered} messages in total (members {counts:?}), \
                     expected exactly {n}"
                ));
            }
        }
    }
    let first = results.iter().filter_map(|r| r.first).min().unwrap();
    let last = results.iter().filter_map(|r| r.last).max().unwrap();
    let secs = (last - first).as_secs_f64().max(1e-9);
    Ok(Throughput {
        delivered,
        secs,
        msgs_per_sec: delivered as f64 / secs,
        mb_per_sec: delivered as f64 * size as f64 / secs / 1e6,
        min_member: *counts.iter().min().unwrap(),
        max_member: *counts.iter().max().unwrap(),
        pub_wait_window: waits.0,
        pub_wait_pong: waits.1,
    })
}

/// Request/reply round-trip latency: one responder, one requester, one request at a time.
pub fn reqrep(addr: &str, n: u64, warmup: u64, size: usize, timeout: Duration) -> Res<Latency> {
    let ctx = Ctx::new(timeout);
    let subject = unique_subject("req");
    let inbox = format!("_INBOX.{}", unique_subject("reply"));
    let mut responder = Conn::connect(addr, "responder", &ctx)?;
    responder.sub(&subject, None, 1)?;
    responder.flush()?;
    let mut requester = Conn::connect(addr, "requester", &ctx)?;
    requester.sub(&inbox, None, 1)?;
    requester.flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let resp_sock = responder.try_clone_stream()?;
    let handle = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        thread::spawn(move || {
            let body = payload(size);
            let mut out = Vec::with_capacity(size + 128);
            let r = (|| -> Res<u64> {
                let mut served = 0u64;
                loop {
                    let ev = match responder.next_event() {
                        Ok(ev) => ev,
                        Err(_) if stop.load(Ordering::Acquire) => return Ok(served),
                        Err(e) => return Err(e),
                    };
                    match ev {
                        Event::Msg { has_reply: true, .. } => {
                            out.clear();
                            out.extend_from_slice(b"PUB ");
                            out.extend_from_slice(responder.reply());
                            out.extend_from_slice(format!(" {size}\r\n").as_bytes());
                            out.extend_from_slice(&body);
                            out.extend_from_slice(b"\r\n");
                            responder.write_all(&out)?;
                            served += 1;
                        }
                        Event::Msg { has_reply: false, .. } => {
                            return Err("responder: request without a reply subject".into())
                        }
                        Event::Ping => responder.write_all(b"PONG\r\n")?,
                        _ => {}
                    }
                }
            })();
            if let Err(e) = &r {
                ctx.fail(e.clone());
            }
            r
        })
    };

    let mut frame = format!("PUB {subject} {inbox} {size}\r\n").into_bytes();
    frame.extend_from_slice(&payload(size));
    frame.extend_from_slice(b"\r\n");
    let mut rtts: Vec<u64> = Vec::with_capacity(n as usize);
    let run = (|| -> Res<f64> {
        let mut started = Instant::now();
        for i in 0..warmup + n {
            if i == warmup {
                started = Instant::now();
            }
            let t0 = Instant::now();
            requester.write_all(&frame)?;
            loop {
                match requester.next_event()? {
                    Event::Msg { len, .. } => {
                        if len != size {
                            return Err(format!("reply of {len} bytes, expected {size}"));
                        }
                        break;
                    }
                    Event::Ping => requester.write_all(b"PONG\r\n")?,
                    _ => {}
                }
            }
            if i >= warmup {
                rtts.push(t0.elapsed().as_nanos() as u64);
            }
        }
        Ok(started.elapsed().as_secs_f64())
    })();
    stop.store(true, Ordering::Release);
    let _ = resp_sock.shutdown(std::net::Shutdown::Both);
    let joined = handle.join().unwrap_or_else(|_| Err("responder thread panicked".into()));
    let total_secs = match run {
        Ok(s) => s,
        Err(e) => return Err(ctx.first_error().unwrap_or(e)),
    };
    joined?;
    rtts.sort_unstable();
    let pct = |p: f64| -> f64 {
        let idx = ((p / 100.0) * rtts.len() as f64).ceil() as usize;
        rtts[idx.clamp(1, rtts.len()) - 1] as f64 / 1000.0
    };
    let mean = rtts.iter().sum::<u64>() as f64 / rtts.len() as f64 / 1000.0;
    Ok(Latency {
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
        max_us: *rtts.last().unwrap() as f64 / 1000.0,
        mean_us: mean,
        reqs_per_sec: n as f64 / total_secs,
    })
}
