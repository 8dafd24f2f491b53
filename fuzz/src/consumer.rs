//! Event soup for the JetStream pull consumer's state machine (`Consumer`): random stream
//! appends and removals, the durable sequence moving up, pull requests (batches, byte budgets,
//! expiry, no_wait, heartbeats), pumps, acks of every kind (for delivered, already acked and
//! never delivered sequences), time passing with ticks, and restarts from the persisted state.
//! After every input:
//! - nothing panics;
//! - the ack floor never goes back, nor do the delivered consumer and stream sequences (across
//!   restarts too: they are persisted state);
//! - every pending sequence lies above the ack floor and at or below the delivered stream
//!   sequence, and `num_ack_pending` counts them; with ack policy none nothing is pending;
//! - a first delivery never exceeds `max_ack_pending` outstanding, and no message is delivered
//!   above the durable sequence or more than `max_deliver` times;
//! - every delivery takes the next consumer sequence and its ack subject names the delivery
//!   count the consumer keeps; a message is delivered for the first time once, in order;
//! - an ack counts at most once: a message acknowledged (or terminated) while pending leaves
//!   pending for good and is never delivered again; an ack of a pending message is answered;
//!   `done` (the retention hint) names only sequences already handed out.
//!
//! The soup draws every decision from `R`, so the same code runs from a seed (`fjord-fuzz
//! consumer <seed>`) and from libFuzzer's bytes (`fuzz/cargo-fuzz`, target `consumer`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fjord_core::jetstream::api::{AckPolicy, ConsumerConfig, NextRequest};
use fjord_core::jetstream::consumer::{AckKind, Consumer};
use fjord_core::store::{Limits, MemStore, StreamStore};
use fjord_core::time::Instant;
use rand::Rng;

const SUBJECTS: &[&str] = &["a.x", "a.y", "b.x"];
const FILTERS: &[&str] = &["a.*", "b.x", "a.y"];

/// What the soup remembers to judge the consumer by.
#[derive(Default)]
struct Model {
    ack_floor: u64,
    delivered_cseq: u64,
    delivered_sseq: u64,
    /// Deliveries made of each stream sequence.
    deliveries: BTreeMap<u64, u64>,
    /// Sequences acknowledged (or terminated) with an ack that changed something.
    acked: BTreeSet<u64>,
    /// Highest sequence delivered for the first time.
    first_high: u64,
    /// The consumer sequence of each stream sequence's last delivery.
    last_cseq: BTreeMap<u64, u64>,
}

fn config<R: Rng>(rng: &mut R) -> ConsumerConfig {
    let ack_policy = [AckPolicy::Explicit, AckPolicy::Explicit, AckPolicy::All, AckPolicy::None]
        [rng.random_range(0..4usize)];
    let filter_subject =
        rng.random_bool(0.3).then(|| FILTERS[rng.random_range(0..FILTERS.len())].to_string());
    ConsumerConfig {
        durable_name: Some("C".into()),
        ack_policy,
        ack_wait: rng.random_range(1..2_000) * 1_000_000,
        max_ack_pending: [0, 1, 3, 10][rng.random_range(0..4usize)],
        max_deliver: [-1, 1, 2, 5][rng.random_range(0..4usize)],
        max_waiting: rng.random_range(1..5),
        max_batch: [0, 2][rng.random_range(0..2usize)],
        filter_subject,
        ..Default::default()
    }
}

/// `$JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<cseq>.<ts>.<pending>`.
fn ack_fields(reply: &str) -> Option<(u64, u64, u64)> {
    let f: Vec<&str> = reply.split('.').collect();
    (f.len() == 9 && f[0] == "$JS" && f[1] == "ACK")
        .then(|| Some((f[4].parse().ok()?, f[5].parse().ok()?, f[6].parse().ok()?)))
        .flatten()
}

pub fn soup<R: Rng>(rng: &mut R) -> Result<(), String> {
    let cfg = config(rng).normalize().map_err(|e| format!("config refused: {e:?}"))?;
    let tracked = cfg.ack_policy != AckPolicy::None;
    let mut store = MemStore::new(Limits::default());
    for _ in 0..rng.random_range(0..6) {
        let s = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
        store.store(s.as_bytes(), b"", b"m", 0, None).map_err(|e| format!("store: {e}"))?;
    }
    let mut now = Instant(rng.random_range(0..1 << 30));
    let mut c = Consumer::new("S", "C", cfg.clone(), 0, &mut store, now);
    let mut m = Model {
        ack_floor: c.state.ack_floor.stream_seq,
        delivered_sseq: c.state.delivered.stream_seq,
        first_high: c.state.delivered.stream_seq,
        ..Model::default()
    };
    let mut durable = store.state().last_seq;
    let steps = rng.random_range(1..150);
    for step in 0..steps {
        let mut out = Vec::new();
        let mut pumped = false;
        match rng.random_range(0..12) {
            0 | 1 => {
                let s = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
                let payload = vec![b'p'; rng.random_range(0..40)];
                store
                    .store(s.as_bytes(), b"", &payload, 0, None)
                    .map_err(|e| format!("store: {e}"))?;
            }
            2 => {
                let last = store.state().last_seq;
                if last > 0 {
                    let _ = store.remove(rng.random_range(1..=last));
                }
            }
            3 => durable = rng.random_range(durable..=store.state().last_seq.max(durable)),
            4 | 5 => {
                let req = NextRequest {
                    batch: Some(rng.random_range(0..5)),
                    expires: rng.random_bool(0.4).then(|| rng.random_range(0..500) * 1_000_000),
                    no_wait: Some(rng.random_bool(0.3)),
                    max_bytes: rng.random_bool(0.2).then(|| rng.random_range(0..100)),
                    idle_heartbeat: rng
                        .random_bool(0.2)
                        .then(|| rng.random_range(1..200) * 1_000_000),
                };
                c.request(now, "inbox", req, &mut out);
                c.pump(now, 0, &mut store, durable, &mut out);
                pumped = true;
            }
            6 => {
                c.pump(now, 0, &mut store, durable, &mut out);
                pumped = true;
            }
            7 | 8 => {
                let delivered: Vec<u64> = m.deliveries.keys().copied().collect();
                let sseq = if !delivered.is_empty() && rng.random_bool(0.85) {
                    delivered[rng.random_range(0..delivered.len())]
                } else {
                    rng.random_range(0..=store.state().last_seq + 2)
                };
                let kind = match rng.random_range(0..6) {
                    0..=2 => AckKind::Ack,
                    3 => AckKind::Nak(
                        rng.random_bool(0.5).then(|| rng.random_range(0..300) * 1_000_000),
                    ),
                    4 => AckKind::InProgress,
                    _ => AckKind::Term,
                };
                let was_pending = c.state.pending.contains_key(&sseq);
                // The consumer sequence of its last delivery, as the ack subject carries it.
                let dseq = m.last_cseq.get(&sseq).copied().unwrap_or(0);
                let answered = c.ack(now, sseq, dseq, &kind);
                if !answered && was_pending && tracked {
                    return Err(format!(
                        "step {step}: ack {sseq} {kind:?} of a pending message unanswered"
                    ));
                }
                if was_pending && tracked && matches!(kind, AckKind::Ack | AckKind::Term) {
                    if !m.acked.insert(sseq) {
                        return Err(format!("step {step}: sequence {sseq} acknowledged twice"));
                    }
                    if c.state.pending.contains_key(&sseq) {
                        return Err(format!("step {step}: {sseq} still pending after {kind:?}"));
                    }
                }
            }
            9 | 10 => {
                now = now + Duration::from_millis(rng.random_range(0..800));
                c.tick(now, &mut out);
                c.pump(now, 0, &mut store, durable, &mut out);
                pumped = true;
            }
            _ => {
                // A restart: the persisted state comes back; clocks and waiting requests do not.
                let state = c.state.clone();
                c = Consumer::recovered("S", "C", cfg.clone(), 0, state, now);
            }
        }
        // Deliveries this step.
        for o in out.iter().filter(|o| o.reply.is_some()) {
            if !pumped {
                return Err(format!("step {step}: a delivery outside a pump"));
            }
            let reply = o.reply.as_deref().unwrap_or_default();
            let Some((count, sseq, cseq)) = ack_fields(reply) else {
                return Err(format!("step {step}: malformed ack subject {reply:?}"));
            };
            if sseq > durable {
                return Err(format!(
                    "step {step}: delivered {sseq} above the durable sequence {durable}"
                ));
            }
            if cseq != m.delivered_cseq + 1 {
                return Err(format!(
                    "step {step}: consumer sequence {cseq} after {}",
                    m.delivered_cseq
                ));
            }
            m.delivered_cseq = cseq;
            m.last_cseq.insert(sseq, cseq);
            if m.acked.contains(&sseq) && tracked {
                return Err(format!("step {step}: redelivered {sseq}, already acknowledged"));
            }
            let n = m.deliveries.entry(sseq).or_insert(0);
            *n += 1;
            if count != *n {
                return Err(format!(
                    "step {step}: {sseq} delivery {count} per its subject, {n} counted"
                ));
            }
            if cfg.max_deliver > 0 && *n > cfg.max_deliver as u64 {
                return Err(format!(
                    "step {step}: {sseq} delivered {n} times, max_deliver {}",
                    cfg.max_deliver
                ));
            }
            if *n == 1 {
                if sseq <= m.first_high {
                    return Err(format!(
                        "step {step}: first delivery of {sseq} after {}",
                        m.first_high
                    ));
                }
                m.first_high = sseq;
                if tracked
                    && cfg.max_ack_pending > 0
                    && c.state.pending.len() as i64 > cfg.max_ack_pending
                {
                    return Err(format!(
                        "step {step}: {} pending, max_ack_pending {}",
                        c.state.pending.len(),
                        cfg.max_ack_pending
                    ));
                }
            }
        }
        // `done` is a hint list for retention, which is idempotent: a repeated ack may name a
        // sequence again, so only its bounds are checked.
        if let Some(s) = c.done.drain(..).find(|&s| s >= c.state.next_sseq) {
            return Err(format!("step {step}: done names {s}, never handed out"));
        }
        // The persistent state.
        let st = &c.state;
        if st.ack_floor.stream_seq < m.ack_floor {
            return Err(format!(
                "step {step}: ack floor went back from {} to {}",
                m.ack_floor, st.ack_floor.stream_seq
            ));
        }
        if st.delivered.stream_seq < m.delivered_sseq
            || st.delivered.consumer_seq != m.delivered_cseq
        {
            return Err(format!(
                "step {step}: delivered {:?}, the deliveries seen say cseq {} sseq >= {}",
                st.delivered, m.delivered_cseq, m.delivered_sseq
            ));
        }
        m.ack_floor = st.ack_floor.stream_seq;
        m.delivered_sseq = st.delivered.stream_seq;
        if c.num_ack_pending() != st.pending.len() {
            return Err(format!(
                "step {step}: num_ack_pending {} for {} pending",
                c.num_ack_pending(),
                st.pending.len()
            ));
        }
        if !tracked && !st.pending.is_empty() {
            return Err(format!("step {step}: ack policy none keeps {} pending", st.pending.len()));
        }
        if tracked && cfg.max_ack_pending > 0 && st.pending.len() as i64 > cfg.max_ack_pending {
            return Err(format!(
                "step {step}: {} pending, max_ack_pending {}",
                st.pending.len(),
                cfg.max_ack_pending
            ));
        }
        for (sseq, p) in &st.pending {
            if *sseq <= st.ack_floor.stream_seq || *sseq > st.delivered.stream_seq {
                return Err(format!(
                    "step {step}: pending {sseq} outside (ack floor {}, delivered {}]",
                    st.ack_floor.stream_seq, st.delivered.stream_seq
                ));
            }
            if p.deliveries == 0 || p.cseq > st.delivered.consumer_seq {
                return Err(format!(
                    "step {step}: pending {sseq} is {p:?}, delivered {:?}",
                    st.delivered
                ));
            }
        }
    }
    Ok(())
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    use rand::SeedableRng;
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    soup(&mut rng)
}
