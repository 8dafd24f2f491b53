//! The key-value linearizability checker on hand-built histories, on histories generated from
//! real sequential executions (which must pass) and their corruptions (which must fail), and a
//! timing run (`--ignored`, release build).

use std::time::Instant;

use fjord_sim::checker::linearizability::{
    check, Completion, KvCall, KvOp, KvReturn, Limits, Report, Verdict,
};
use fjord_sim::workload::kv_history::KvRegister;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Op = KvOp<u64, u64>;

fn done(client: u64, call: KvCall<u64, u64>, invoked: u64, at: u64, output: KvReturn<u64>) -> Op {
    KvOp { client, call, invoked, returned: Some(Completion { at, output }) }
}

fn get(client: u64, key: u64, seen: Option<u64>, invoked: u64, at: u64) -> Op {
    done(client, KvCall::Get { key }, invoked, at, KvReturn::Get(seen))
}

fn put(client: u64, key: u64, value: u64, invoked: u64, at: u64) -> Op {
    done(client, KvCall::Put { key, value }, invoked, at, KvReturn::Put)
}

fn cas(client: u64, key: u64, expected: Option<u64>, new: u64, ok: bool, t: (u64, u64)) -> Op {
    done(client, KvCall::Cas { key, expected, new }, t.0, t.1, KvReturn::Cas(ok))
}

fn unreturned(client: u64, call: KvCall<u64, u64>, invoked: u64) -> Op {
    KvOp { client, call, invoked, returned: None }
}

fn report(history: &[Op]) -> Report<u64, u64> {
    check(history, Limits::default()).expect("well-formed history")
}

fn verdict(history: &[Op]) -> Verdict<u64, u64> {
    report(history).verdict
}

fn assert_linearizable(history: &[Op]) {
    let v = verdict(history);
    assert_eq!(v, Verdict::Linearizable, "expected linearizable, got: {v}");
}

/// Asserts the history fails, and returns the explanation.
fn counterexample(history: &[Op]) -> fjord_sim::checker::linearizability::Counterexample<u64, u64> {
    match verdict(history) {
        Verdict::NotLinearizable(c) => *c,
        other => panic!("expected not linearizable, got: {other}"),
    }
}

/// The same, found by the search alone.
fn without_quick_refutation(
    history: &[Op],
) -> fjord_sim::checker::linearizability::Counterexample<u64, u64> {
    let limits = Limits { quick_refutation: false, ..Limits::default() };
    match check(history, limits).unwrap().verdict {
        Verdict::NotLinearizable(c) => *c,
        other => panic!("expected not linearizable, got: {other}"),
    }
}

fn shown(c: &fjord_sim::checker::linearizability::Counterexample<u64, u64>) -> Vec<usize> {
    let mut ids: Vec<usize> = c.ops.iter().map(|(i, _)| *i).collect();
    ids.sort();
    ids
}

#[test]
fn an_empty_history_is_linearizable() {
    let r = report(&[]);
    assert_eq!(r.verdict, Verdict::Linearizable);
    assert_eq!((r.keys, r.ops), (0, 0));
}

#[test]
fn a_sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(0, 1, None, 0, 1),
        cas(0, 1, None, 5, true, (2, 3)),
        put(1, 1, 6, 4, 5),
        get(2, 1, Some(6), 6, 7),
        cas(0, 1, Some(5), 7, false, (8, 9)),
        cas(1, 1, Some(6), 7, true, (10, 11)),
        get(0, 1, Some(7), 12, 13),
    ]);
}

#[test]
fn a_sequential_history_with_a_wrong_read_is_not() {
    let c = counterexample(&[put(0, 1, 6, 0, 1), get(0, 1, Some(5), 2, 3)]);
    assert_eq!(c.key, 1);
    assert_eq!(c.culprit.0, 1);
}

#[test]
fn concurrent_writes_linearize_in_the_only_order_the_reads_allow() {
    // put(2) began before put(1) ended, so it may go first; the read after both says 1 won.
    let history = [put(0, 1, 1, 0, 10), put(1, 1, 2, 5, 30), get(2, 1, Some(1), 35, 40)];
    assert_linearizable(&history);
    // Had put(2) begun after put(1) ended, the read of 1 after both would be stale.
    let c =
        counterexample(&[put(0, 1, 1, 0, 10), put(1, 1, 2, 11, 30), get(2, 1, Some(1), 35, 40)]);
    assert_eq!(c.culprit.0, 2);
    assert_eq!(shown(&c), vec![0, 1, 2]);
}

#[test]
fn concurrent_cas_from_absent_has_exactly_one_winner() {
    let one_wins = [
        cas(0, 1, None, 1, true, (0, 10)),
        cas(1, 1, None, 2, false, (0, 10)),
        get(2, 1, Some(1), 11, 12),
    ];
    assert_linearizable(&one_wins);
    let both_win = [cas(0, 1, None, 1, true, (0, 10)), cas(1, 1, None, 2, true, (0, 10))];
    let c = counterexample(&both_win);
    assert_eq!(shown(&c), vec![0, 1]);
}

#[test]
fn intervals_touching_at_one_instant_are_concurrent() {
    assert_linearizable(&[put(0, 1, 1, 0, 10), get(1, 1, None, 10, 20)]);
    counterexample(&[put(0, 1, 1, 0, 10), get(1, 1, None, 11, 20)]);
}

#[test]
fn a_stale_read_after_a_completed_write_is_caught_and_explained() {
    let mut history = vec![put(0, 7, 1, 0, 10), put(0, 7, 2, 20, 30)];
    // Noise: reads that are fine, before and concurrent with the stale one, on other clients.
    for i in 0..20 {
        history.push(get(1, 7, Some(2), 31 + i * 10, 35 + i * 10));
    }
    history.push(get(2, 7, Some(1), 300, 310));
    history.push(get(3, 7, Some(2), 305, 320));
    let stale = 22;
    let c = counterexample(&history);
    assert_eq!(c.key, 7);
    assert_eq!(c.culprit.0, stale, "{c}");
    // The other reads are not needed to show it: only the writes and the stale read remain.
    assert_eq!(shown(&c), vec![0, 1, stale], "{c}");
    assert!(c.minimal);
    assert!(c.prefix_ops > c.ops.len(), "the prefix had the noise reads: {}", c.prefix_ops);
    let text = c.to_string();
    assert!(text.contains("key 7 is not linearizable"), "{text}");
    assert!(text.contains(&format!("#{stale} client 2 get(7) -> Some(1) [300, 310]")), "{text}");
    assert!(text.contains("#1 client 0 put(7, 2) -> ok [20, 30]"), "{text}");
}

#[test]
fn writes_nobody_observed_are_left_out_of_the_explanation() {
    let history = [
        put(0, 7, 100, 0, 1),
        put(1, 7, 101, 2, 3),
        put(0, 7, 1, 4, 10),
        get(2, 7, Some(101), 4, 5),
        put(0, 7, 2, 20, 30),
        get(2, 7, Some(1), 40, 50),
    ];
    let c = counterexample(&history);
    assert_eq!(c.culprit.0, 5);
    // put(100) is observed by nothing; put(101) only by a read that is not needed.
    assert_eq!(shown(&c), vec![2, 4, 5], "{c}");
    assert!(c.minimal);
}

#[test]
fn two_readers_seeing_concurrent_writes_in_opposite_orders_is_not_linearizable() {
    let history = [
        put(0, 1, 1, 0, 100),
        put(1, 1, 2, 0, 100),
        get(2, 1, Some(1), 10, 20),
        get(2, 1, Some(2), 30, 40),
        get(3, 1, Some(2), 10, 20),
        get(3, 1, Some(1), 30, 40),
    ];
    let c = counterexample(&history);
    assert_eq!(c.key, 1);
    // Each reader alone is fine.
    assert_linearizable(&history[..4]);
    let other_reader =
        [history[0].clone(), history[1].clone(), history[4].clone(), history[5].clone()];
    assert_linearizable(&other_reader);
    // The shortest failing prefix ends with the second read of one reader.
    assert!(c.culprit.0 == 3 || c.culprit.0 == 5, "{c}");
    assert!(c.longest_order.len() < c.ops.len(), "{c}");
}

#[test]
fn a_cas_that_succeeded_against_a_value_never_written_is_not_linearizable() {
    let history = [put(0, 1, 1, 0, 10), cas(1, 1, Some(7), 9, true, (20, 30))];
    let c = counterexample(&history);
    assert_eq!(c.culprit.0, 1);
    assert!(c.note.is_some(), "found without a search: {c}");
    let searched = without_quick_refutation(&history);
    assert_eq!((searched.culprit.0, searched.note), (1, None));
    // Nor from absent, once a write has completed.
    counterexample(&[put(0, 1, 1, 0, 10), cas(1, 1, None, 9, true, (20, 30))]);
    // A cas that failed although its expectation held throughout is as wrong.
    counterexample(&[put(0, 1, 1, 0, 10), cas(1, 1, Some(1), 9, false, (20, 30))]);
}

#[test]
fn an_unreturned_write_may_take_effect_late() {
    assert_linearizable(&[
        unreturned(0, KvCall::Put { key: 1, value: 5 }, 0),
        get(1, 1, None, 10, 20),
        get(1, 1, None, 500, 510),
        get(1, 1, Some(5), 1_000, 1_010),
        get(2, 1, Some(5), 2_000, 2_010),
    ]);
}

#[test]
fn an_unreturned_write_may_never_take_effect() {
    assert_linearizable(&[
        put(1, 1, 4, 0, 5),
        unreturned(0, KvCall::Put { key: 1, value: 5 }, 6),
        get(1, 1, Some(4), 10, 20),
        get(1, 1, Some(4), 1_000_000, 1_000_010),
    ]);
}

#[test]
fn an_unreturned_write_cannot_take_effect_before_it_was_invoked() {
    let c = counterexample(&[
        get(1, 1, Some(5), 0, 10),
        unreturned(0, KvCall::Put { key: 1, value: 5 }, 20),
    ]);
    assert_eq!(c.culprit.0, 0);
    // And by the search, with a read of an old value that the late write would otherwise
    // explain: the pending put(5) may not slip in before it was invoked.
    let history = [
        put(1, 1, 5, 0, 1),
        put(1, 1, 6, 2, 3),
        get(2, 1, Some(5), 4, 10),
        unreturned(0, KvCall::Put { key: 1, value: 5 }, 20),
    ];
    assert_eq!(without_quick_refutation(&history).culprit.0, 2);
}

#[test]
fn an_unreturned_write_takes_effect_at_most_once() {
    // put(5) may land after put(6), so 5 can be read after 6 was written; but then 6 again
    // needs a second write of 6 that never happened.
    let history = [
        unreturned(0, KvCall::Put { key: 1, value: 5 }, 0),
        put(1, 1, 6, 10, 20),
        get(2, 1, Some(5), 30, 40),
    ];
    assert_linearizable(&history);
    let mut again = history.to_vec();
    again.push(get(2, 1, Some(6), 50, 60));
    assert_eq!(counterexample(&again).culprit.0, 3);
}

#[test]
fn an_unreturned_cas_takes_effect_only_where_its_expectation_holds() {
    let pending_cas = unreturned(0, KvCall::Cas { key: 1, expected: Some(1), new: 2 }, 20);
    assert_linearizable(&[put(1, 1, 1, 0, 10), pending_cas.clone(), get(2, 1, Some(2), 30, 40)]);
    counterexample(&[put(1, 1, 3, 0, 10), pending_cas, get(2, 1, Some(2), 30, 40)]);
}

#[test]
fn an_unreturned_read_constrains_nothing() {
    assert_linearizable(&[put(0, 1, 1, 0, 10), unreturned(1, KvCall::Get { key: 1 }, 0)]);
}

#[test]
fn keys_are_checked_independently_and_the_failing_one_is_named() {
    let mut history = Vec::new();
    for key in 0..50u64 {
        let t = key * 3;
        history.push(put(key % 4, key, key + 100, t, t + 50));
        history.push(put((key + 1) % 4, key, key + 200, t + 1, t + 60));
        history.push(get((key + 2) % 4, key, Some(key + 100), t + 61, t + 70));
        history.push(get((key + 3) % 4, key, Some(key + 100), t + 71, t + 80));
    }
    let r = report(&history);
    assert_eq!(r.verdict, Verdict::Linearizable);
    assert_eq!(r.keys, 50);
    // Key 17 reads a value of key 18 (the same number is never written to key 17).
    let bad = 17 * 4 + 3;
    history[bad] = get(0, 17, Some(18 + 100), 17 * 3 + 71, 17 * 3 + 80);
    // And key 33 reads a value never written to it.
    history[33 * 4 + 3] = get(0, 33, Some(333), 33 * 3 + 71, 33 * 3 + 80);
    let r = report(&history);
    assert_eq!(r.failed_keys, vec![17, 33]);
    let Verdict::NotLinearizable(c) = r.verdict else { panic!("expected a failure") };
    assert_eq!((c.key, c.culprit.0), (17, bad));
}

#[test]
fn a_history_too_big_for_the_budget_is_undecided_not_passed() {
    // 10 concurrent writes and a stale read after them all: the search must try every subset
    // of writes before it can say no.
    let mut history: Vec<Op> = vec![put(50, 1, 50, 0, 5)];
    history.extend((0..10).map(|i| put(i, 1, i, 10, 1_000)));
    history.push(get(99, 1, Some(50), 2_000, 2_010));
    history.push(put(98, 2, 1, 0, 1));
    let limits = Limits { steps_per_key: 100, explain_steps: 100, quick_refutation: true };
    let r = check(&history, limits).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown { keys: vec![1] });
    assert_eq!(r.undecided_keys, vec![1]);
    assert!(r.verdict.to_string().contains("ran out of budget"));
    // With room it decides.
    assert!(matches!(report(&history).verdict, Verdict::NotLinearizable(_)));
}

#[test]
fn malformed_histories_are_refused() {
    let backwards = [put(0, 1, 1, 10, 5)];
    assert_eq!(check(&backwards, Limits::default()).unwrap_err().op, 0);
    let mismatched = [put(0, 1, 1, 0, 1), done(0, KvCall::Get { key: 1 }, 2, 3, KvReturn::Put)];
    let err = check(&mismatched, Limits::default()).unwrap_err();
    assert_eq!(err.op, 1);
    assert!(err.to_string().contains("not of its call's kind"), "{err}");
}

/// A history from a real execution: each client runs operations one after another; each takes
/// effect at a random point inside its interval (the real order is by that point), so intervals
/// of different clients overlap freely. Some operations get no return: half of those took
/// effect, half never did. Returns the history and the values written per key.
/// With `distinct` every write writes a new value (as the Raft workload's (client, seq)
/// values will), and a cas expects one of the last values written; else values are 0..4.
fn generate(
    seed: u64,
    clients: u64,
    per_client: usize,
    keys: u64,
    max_len: u64,
    distinct: bool,
) -> Vec<Op> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (effect time, op index, takes effect)
    let mut effects: Vec<(u64, usize, bool)> = Vec::new();
    let mut history: Vec<Op> = Vec::new();
    for client in 0..clients {
        let mut t = rng.random_range(0..max_len);
        for _ in 0..per_client {
            let key = rng.random_range(0..keys);
            let fresh = (history.len() + 1) as u64 * 10;
            let value = if distinct { fresh } else { rng.random_range(0..4) };
            let call = match rng.random_range(0..3) {
                0 => KvCall::Get { key },
                1 => KvCall::Put { key, value },
                _ => {
                    let expected = if rng.random_bool(0.2) {
                        None
                    } else if distinct {
                        Some(fresh.saturating_sub(rng.random_range(1..40) * 10))
                    } else {
                        Some(rng.random_range(0..4))
                    };
                    KvCall::Cas { key, expected, new: value }
                }
            };
            let len = rng.random_range(1..=max_len);
            let effect = t + rng.random_range(0..=len);
            let lost = rng.random_bool(0.05);
            let takes_effect = !lost || rng.random_bool(0.5);
            effects.push((effect, history.len(), takes_effect));
            history.push(KvOp {
                client,
                call,
                invoked: t,
                returned: (!lost).then_some(Completion { at: t + len, output: KvReturn::Put }),
            });
            t += len + rng.random_range(0..max_len / 10 + 1);
        }
    }
    effects.sort();
    let mut register = KvRegister::<u64, u64>::default();
    for (_, i, takes_effect) in effects {
        if takes_effect {
            let output = register.apply(&history[i].call);
            if let Some(c) = history[i].returned.as_mut() {
                c.output = output;
            }
        }
    }
    history
}

/// Corrupts the `pick`-th returned read to a value never written to any key; its position.
fn corrupt_a_read(history: &mut [Op], pick: usize) -> Option<usize> {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].call, KvCall::Get { .. }) && history[i].returned.is_some())
        .collect();
    let i = *reads.get(pick % reads.len().max(1))?;
    history[i].returned.as_mut()?.output = KvReturn::Get(Some(1_000_000));
    Some(i)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn real_executions_pass_and_a_corrupted_read_fails(
        seed in any::<u64>(),
        clients in 1u64..6,
        per_client in 1usize..15,
        keys in 1u64..4,
        max_len in 1u64..200,
        pick in any::<usize>(),
        distinct in any::<bool>(),
    ) {
        let mut history = generate(seed, clients, per_client, keys, max_len, distinct);
        let r = check(&history, Limits::default()).unwrap();
        prop_assert_eq!(&r.verdict, &Verdict::Linearizable, "{}", r.verdict);
        prop_assert!(r.undecided_keys.is_empty());

        if let Some(bad) = corrupt_a_read(&mut history, pick) {
            let r = check(&history, Limits::default()).unwrap();
            let key = *history[bad].call.key();
            match &r.verdict {
                Verdict::NotLinearizable(c) => {
                    prop_assert_eq!(c.key, key);
                    prop_assert_eq!(c.culprit.0, bad, "{}", c);
                    prop_assert!(c.ops.iter().any(|(i, _)| *i == bad));
                }
                other => prop_assert!(false, "corrupted read at #{} not caught: {}", bad, other),
            }
            prop_assert_eq!(r.failed_keys, vec![key]);
            // The search alone finds it too (the quick refutation is only a shortcut).
            let limits = Limits { quick_refutation: false, ..Limits::default() };
            match check(&history, limits).unwrap().verdict {
                Verdict::NotLinearizable(c) => {
                    prop_assert_eq!(c.culprit.0, bad, "{}", c);
                    prop_assert!(c.note.is_none());
                }
                other => prop_assert!(false, "search missed #{}: {}", bad, other),
            }
        }
    }
}

#[test]
fn the_same_history_gives_the_same_report() {
    let mut history = generate(7, 5, 40, 2, 100, false);
    corrupt_a_read(&mut history, 3).unwrap();
    assert_eq!(report(&history), report(&history));
}

/// Timing: `cargo test --release -p fjord-sim --test linearizability -- --ignored --nocapture`.
/// 10 clients x 200 operations each, operations up to 1000 time units long with gaps up to 100
/// (about 10 in flight at any time), 5% without a return; over 5 keys and over 1 key.
#[test]
#[ignore]
fn timing_10_clients_200_ops() {
    for distinct in [false, true] {
        for keys in [5, 1] {
            for seed in 0..3 {
                let label = format!(
                    "{keys} key(s), {} values, seed {seed}",
                    if distinct { "distinct" } else { "0..4" }
                );
                let mut history = generate(seed, 10, 200, keys, 1_000, distinct);
                let started = Instant::now();
                let r = check(&history, Limits::default()).unwrap();
                let pass = started.elapsed();
                assert_eq!(r.verdict, Verdict::Linearizable, "{label}: {}", r.verdict);
                let steps = r.steps;
                let bad = corrupt_a_read(&mut history, seed as usize * 17).unwrap();
                let started = Instant::now();
                let r = check(&history, Limits::default()).unwrap();
                let quick = started.elapsed();
                let Verdict::NotLinearizable(c) = &r.verdict else { panic!("{label}: not caught") };
                assert_eq!(c.culprit.0, bad);
                let started = Instant::now();
                let limits = Limits { quick_refutation: false, ..Limits::default() };
                let r = check(&history, limits).unwrap();
                let searched = started.elapsed();
                let outcome = match &r.verdict {
                    Verdict::NotLinearizable(c) => {
                        assert_eq!(c.culprit.0, bad);
                        format!("caught in {} steps, explained with {} ops", r.steps, c.ops.len())
                    }
                    Verdict::Unknown { .. } => "UNDECIDED (budget of 1M steps spent)".to_string(),
                    Verdict::Linearizable => panic!("{label}: search passed a corrupted read"),
                };
                println!(
                    "{label}: linearizable in {pass:?} ({steps} steps); corrupted read: quick \
                     check {quick:?}; search alone {searched:?}: {outcome}"
                );
            }
        }
    }
}
