//! Fuzzes the client-protocol parser: random byte streams (valid ops, mutated ops, garbage)
//! must parse to the same ops and the same error whether fed whole or split into reads at
//! random points, never panic, and, when only valid ops were generated, give back exactly them.

use fjord_core::proto::replay::{check, OwnedOp as Owned};
use fjord_core::proto::ParserConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NAMES: [&str; 9] = ["PUB", "HPUB", "SUB", "UNSUB", "PING", "PONG", "CONNECT", "INFO", "+OK"];
/// Bytes that steer garbage toward the parser's interesting states.
const PROTO_BYTES: &[u8] = b"PUBSHCONIFGKMXRpubshconifg+-E \t\t\r\n\r\n0123456789{}\"";

fn token(rng: &mut ChaCha8Rng) -> Vec<u8> {
    const ALPHA: &[u8] = b"abcxyzABC0123456789._-$*>";
    let len = rng.random_range(1..12);
    (0..len).map(|_| ALPHA[rng.random_range(0..ALPHA.len())]).collect()
}

fn blob(rng: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max);
    (0..len).map(|_| rng.random()).collect()
}

/// A valid op and how it is spelled on the wire (case, whitespace runs, line endings).
fn valid_op(rng: &mut ChaCha8Rng, cfg: ParserConfig, out: &mut Vec<u8>) -> Owned {
    let max_payload = cfg.max_payload.min(300);
    let op = match rng.random_range(0..10) {
        0 => Owned::Connect(format!("{{\"verbose\":false,\"n\":{}}}", rng.random::<u16>()).into()),
        1 => Owned::Info(b"{}".to_vec()),
        2 | 3 => Owned::Pub {
            subject: token(rng),
            reply: rng.random_bool(0.3).then(|| token(rng)),
            headers: None,
            payload: blob(rng, max_payload),
        },
        4 => {
            let h = blob(rng, max_payload / 2);
            let p = blob(rng, max_payload - h.len());
            Owned::Pub {
                subject: token(rng),
                reply: rng.random_bool(0.3).then(|| token(rng)),
                headers: Some(h),
                payload: p,
            }
        }
        5 => Owned::Sub {
            subject: token(rng),
            queue: rng.random_bool(0.3).then(|| token(rng)),
            sid: token(rng),
        },
        6 => Owned::Unsub {
            sid: token(rng),
            max: rng.random_bool(0.5).then(|| rng.random_range(1..1_000_000_000)),
        },
        7 => Owned::Ping,
        8 => Owned::Pong,
        _ => Owned::Ok,
    };
    let mut args: Vec<Vec<u8>> = Vec::new();
    let (name, body): (&str, Option<&[u8]>) = match &op {
        Owned::Connect(j) => {
            args.push(j.clone());
            ("connect", None)
        }
        Owned::Info(j) => {
            args.push(j.clone());
            ("info", None)
        }
        Owned::Pub { subject, reply, headers, payload } => {
            args.push(subject.clone());
            args.extend(reply.clone());
            if let Some(h) = headers {
                args.push(h.len().to_string().into());
                args.push((h.len() + payload.len()).to_string().into());
                ("hpub", None)
            } else {
                args.push(payload.len().to_string().into());
                ("pub", Some(payload))
            }
        }
        Owned::Sub { subject, queue, sid } => {
            args.push(subject.clone());
            args.extend(queue.clone());
            args.push(sid.clone());
            ("sub", None)
        }
        Owned::Unsub { sid, max } => {
            args.push(sid.clone());
            args.extend(max.map(|m| m.to_string().into_bytes()));
            ("unsub", None)
        }
        Owned::Ping => ("ping", None),
        Owned::Pong => ("pong", None),
        Owned::Ok => ("+ok", None),
    };
    for c in name.bytes() {
        out.push(if rng.random_bool(0.8) { c.to_ascii_uppercase() } else { c });
    }
    for a in &args {
        for _ in 0..rng.random_range(1..=3) {
            out.push(if rng.random_bool(0.8) { b' ' } else { b'\t' });
        }
        out.extend_from_slice(a);
    }
    out.extend_from_slice(if rng.random_bool(0.9) { b"\r\n" } else { b"\n" });
    match (&op, body) {
        (Owned::Pub { headers: Some(h), payload, .. }, _) => {
            out.extend_from_slice(h);
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        (_, Some(payload)) => {
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    op
}

fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=bytes.len());
        let byte = if rng.random_bool(0.5) {
            PROTO_BYTES[rng.random_range(0..PROTO_BYTES.len())]
        } else {
            rng.random()
        };
        match rng.random_range(0..3) {
            0 if at < bytes.len() => bytes[at] = byte,
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, byte),
        }
    }
}

fn garbage(rng: &mut ChaCha8Rng, out: &mut Vec<u8>) {
    match rng.random_range(0..4) {
        0 => out.extend(blob(rng, 64)),
        1 => {
            for _ in 0..rng.random_range(0..64) {
                out.push(PROTO_BYTES[rng.random_range(0..PROTO_BYTES.len())]);
            }
        }
        2 => {
            // A known op name followed by a long run: exercises max_control_line.
            out.extend_from_slice(NAMES[rng.random_range(0..NAMES.len())].as_bytes());
            out.push(b' ');
            let fill = if rng.random_bool(0.5) { b'a' } else { b' ' };
            out.extend(std::iter::repeat_n(fill, rng.random_range(0..300)));
            if rng.random_bool(0.5) {
                out.extend_from_slice(b"\r\n");
            }
        }
        _ => {
            // A PUB whose size is near, at or over the limit, or not a number at all.
            let size = match rng.random_range(0..4) {
                0 => rng.random_range(0..1_000_000_000u64).to_string(),
                1 => "-1".into(),
                2 => "99999999999".into(),
                _ => "x".into(),
            };
            out.extend_from_slice(format!("PUB s {size}\r\n").as_bytes());
        }
    }
}

fn config(rng: &mut ChaCha8Rng) -> ParserConfig {
    if rng.random_bool(0.5) {
        ParserConfig::default()
    } else {
        ParserConfig {
            max_control_line: rng.random_range(0..96),
            max_payload: rng.random_range(0..400),
        }
    }
}

/// One case: its own random stream (ChaCha8 stream `case` of `seed`).
pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(case);
    // Some cases are all valid ops so the parse can be compared with what was generated; they
    // use the default limits, which every generated op fits.
    let only_valid = rng.random_bool(0.3);
    let cfg = if only_valid { ParserConfig::default() } else { config(&mut rng) };
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..rng.random_range(0..24) {
        match if only_valid { 0 } else { rng.random_range(0..6) } {
            0..=2 => expected.push(valid_op(&mut rng, cfg, &mut stream)),
            3 | 4 => {
                let mut op = Vec::new();
                valid_op(&mut rng, cfg, &mut op);
                mutate(&mut rng, &mut op);
                stream.extend(op);
            }
            _ => garbage(&mut rng, &mut stream),
        }
    }
    let mut cuts: Vec<usize> =
        (0..rng.random_range(0..12)).map(|_| rng.random_range(0..=stream.len())).collect();
    cuts.sort_unstable();
    let whole = check(cfg, &stream, &cuts)?;
    if only_valid && whole != (expected.clone(), None, stream.len()) {
        return Err(format!("valid ops {expected:?} parsed as {whole:?} with {cfg:?}"));
    }
    Ok(())
}
