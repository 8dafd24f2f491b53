//! Event soup for one client connection's state machine (`ClientConn`): a random stream of
//! protocol ops (well-formed, malformed and plain noise, with and without auth required) goes
//! through the parser into `handle_op`, mixed with time moving on, keepalive timeouts, replies
//! to PINGs and deliveries that reach an UNSUB's max. After every input:
//! - nothing panics;
//! - what the connection writes is well-formed: whole lines, each `+OK`, `PING`, `PONG`,
//!   `-ERR '<text>'` or `INFO {json}`;
//! - the connection's subscriptions are exactly those its `Subscribe` actions added and its
//!   `Unsubscribe` actions (and `forget_subscription`) have not removed: the count, and the sids;
//! - it never sends more keepalive PINGs without a PONG than `ping_max` before closing;
//! - once closed (a `Close` action, a parse error, a stale or auth timeout) it stays closed:
//!   it writes nothing, acts on nothing and asks for no timer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_core::client::auth::AuthConfig;
use fjord_core::client::conn::{Action, ClientConn};
use fjord_core::config::CoreConfig;
use fjord_core::proto::{Parser, ParserConfig};
use fjord_core::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SUBJECTS: &[&str] = &["a", "a.b", "a.*", "a.>", "*.b", ">", "foo.bar", "$JS.API.X", "a..b"];

fn op_bytes(rng: &mut ChaCha8Rng, token: Option<&str>) -> Vec<u8> {
    let subject = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
    let sid = rng.random_range(0..6);
    match rng.random_range(0..14) {
        0 => {
            let auth = match (token, rng.random_bool(0.7)) {
                (Some(t), true) => format!(r#","auth_token":"{t}""#),
                (Some(_), false) => r#","auth_token":"wrong""#.to_string(),
                _ => String::new(),
            };
            let verbose = rng.random_bool(0.5);
            let headers = rng.random_bool(0.5);
            format!(
                "CONNECT {{\"verbose\":{verbose},\"headers\":{headers},\"echo\":true{auth}}}\r\n"
            )
            .into_bytes()
        }
        1..=3 => {
            let n = rng.random_range(0..20);
            let reply = if rng.random_bool(0.3) { " _INBOX.r" } else { "" };
            let mut b = format!("PUB {subject}{reply} {n}\r\n").into_bytes();
            b.extend((0..n).map(|_| rng.random_range(b'a'..=b'z')));
            b.extend_from_slice(b"\r\n");
            b
        }
        4 => {
            let hdr = "NATS/1.0\r\nK: v\r\n\r\n";
            let n = rng.random_range(0..10);
            let mut b =
                format!("HPUB {subject} {} {}\r\n{hdr}", hdr.len(), hdr.len() + n).into_bytes();
            b.extend((0..n).map(|_| b'x'));
            b.extend_from_slice(b"\r\n");
            b
        }
        5..=7 => {
            let queue = if rng.random_bool(0.3) { " q" } else { "" };
            format!("SUB {subject}{queue} {sid}\r\n").into_bytes()
        }
        8 | 9 => {
            let max = match rng.random_range(0..4) {
                0 => String::new(),
                1 => " 0".into(),
                2 => " x".into(),
                _ => format!(" {}", rng.random_range(1..4)),
            };
            format!("UNSUB {sid}{max}\r\n").into_bytes()
        }
        10 => b"PING\r\n".to_vec(),
        11 => b"PONG\r\n".to_vec(),
        12 => [&b"INFO {}\r\n"[..], b"+OK\r\n", b"INFO {bad\r\n"][rng.random_range(0..3)].to_vec(),
        _ => {
            // Noise: random bytes, mostly printable so it sometimes parses.
            let n = rng.random_range(1..12);
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.8) {
                        rng.random_range(b' '..=b'~')
                    } else {
                        rng.random()
                    }
                })
                .collect()
        }
    }
}

/// Whole lines, each one of the forms a connection writes itself.
fn well_formed(out: &[u8]) -> Result<(), String> {
    let mut rest = out;
    while !rest.is_empty() {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err(format!("output ends mid-line: {:?}", String::from_utf8_lossy(rest)));
        };
        let line = &rest[..end];
        let ok = line == b"+OK"
            || line == b"PING"
            || line == b"PONG"
            || (line.starts_with(b"-ERR '") && line.ends_with(b"'") && line.len() > 7)
            || (line.starts_with(b"INFO {") && line.ends_with(b"}"));
        if !ok {
            return Err(format!("malformed output line {:?}", String::from_utf8_lossy(line)));
        }
        rest = &rest[end + 2..];
    }
    Ok(())
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let token = rng.random_bool(0.3).then_some("s3cret");
    let config = CoreConfig {
        ping_interval: Duration::from_millis(rng.random_range(1..500)),
        ping_max: rng.random_range(1..4),
        max_subscriptions: [0, 1, 3][rng.random_range(0..3)],
        max_control_line: [4096, 24][rng.random_range(0..2)],
        max_payload: [1 << 20, 8][rng.random_range(0..2)],
        auth: AuthConfig { token: token.map(String::from), ..AuthConfig::default() },
        ..CoreConfig::default()
    };
    let mut now = Instant(rng.random_range(0..1 << 40));
    let mut conn = ClientConn::new(1, now, &config, Arc::new(config.auth.clone()));
    let mut parser = Parser::new(ParserConfig {
        max_control_line: config.max_control_line,
        max_payload: config.max_payload,
    });
    let mut subs: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
    let mut pings_unanswered = 0u32;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut closed = false;
    let steps = rng.random_range(1..120);
    for step in 0..steps {
        let mut out = Vec::new();
        let mut close_now = false;
        match rng.random_range(0..10) {
            0..=5 => {
                inbuf.extend(op_bytes(&mut rng, token));
                let mut pos = 0;
                while pos < inbuf.len() {
                    match parser.parse(&inbuf[pos..]) {
                        Ok(Some((op, used))) => {
                            pos += used;
                            if matches!(op, fjord_core::proto::ClientOp::Pong) {
                                pings_unanswered = 0;
                            }
                            let before = out.len();
                            let action = conn.handle_op(now, op, &mut out, None);
                            if closed && (out.len() != before || action != Action::None) {
                                return Err(format!(
                                    "step {step}: a closed connection acted: {action:?}"
                                ));
                            }
                            match action {
                                Action::Subscribe { sid, .. } => {
                                    subs.insert(sid.to_vec(), None);
                                }
                                Action::Unsubscribe { sid, max: None, .. } => {
                                    subs.remove(sid);
                                }
                                Action::Unsubscribe { sid, max: Some(m), .. } => {
                                    if let Some(s) = subs.get_mut(sid) {
                                        *s = Some(m);
                                    }
                                }
                                Action::Close(_) => close_now = true,
                                Action::None | Action::Publish(_) => {}
                            }
                            if close_now {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = conn.handle_parse_error(&e, &mut out);
                            close_now = true;
                            break;
                        }
                    }
                }
                inbuf.drain(..pos);
                if close_now {
                    inbuf.clear();
                }
            }
            6 | 7 => {
                now = now + Duration::from_millis(rng.random_range(0..400));
                let due = conn.poll_timeout();
                if closed && due.is_some() {
                    return Err(format!("step {step}: a closed connection asks for a timer"));
                }
                let early = due.is_none_or(|d| now < d);
                if let Some(reason) = conn.on_timeout(now, &mut out) {
                    if early {
                        return Err(format!("step {step}: closed ({reason}) before its deadline"));
                    }
                    close_now = true;
                } else if early && !out.is_empty() {
                    return Err(format!("step {step}: wrote {out:?} before its deadline"));
                }
                pings_unanswered += out.windows(6).filter(|w| w == b"PING\r\n").count() as u32;
                if pings_unanswered > config.ping_max {
                    return Err(format!(
                        "step {step}: {pings_unanswered} PINGs without a PONG, ping_max {}",
                        config.ping_max
                    ));
                }
            }
            8 => {
                // A delivery that reached an UNSUB's max: the driver forgets the sid.
                let limited: Vec<Vec<u8>> =
                    subs.iter().filter(|(_, m)| m.is_some()).map(|(s, _)| s.clone()).collect();
                if !limited.is_empty() {
                    let sid = &limited[rng.random_range(0..limited.len())];
                    conn.forget_subscription(sid);
                    subs.remove(sid);
                }
            }
            _ => {
                // Split reads: a partial op stays buffered until more arrives.
                let b = op_bytes(&mut rng, token);
                let cut = rng.random_range(0..=b.len());
                inbuf.extend_from_slice(&b[..cut]);
            }
        }
        well_formed(&out).map_err(|e| format!("step {step}: {e}"))?;
        if close_now {
            closed = true;
            // The driver forgets a closed connection's subscriptions with it.
            subs.clear();
        }
        if closed != conn.is_closed() {
            return Err(format!(
                "step {step}: closed is {} but the outputs say {closed}",
                conn.is_closed()
            ));
        }
        if !closed {
            if conn.subscription_count() != subs.len() {
                return Err(format!(
                    "step {step}: {} subscriptions, the actions add up to {}",
                    conn.subscription_count(),
                    subs.len()
                ));
            }
            let mut sids: Vec<Vec<u8>> =
                conn.subscriptions().map(|(sid, _, _)| sid.to_vec()).collect();
            sids.sort();
            if sids != subs.keys().cloned().collect::<Vec<_>>() {
                return Err(format!(
                    "step {step}: sids {sids:?} differ from the actions' {:?}",
                    subs.keys()
                ));
            }
        }
    }
    Ok(())
}
