//! Event soup for the subscription index: random inserts (some invalid, some duplicates),
//! removes (present and absent) and matches, checked after every step against a naive model
//! (a list of subscriptions, matched one by one with `subject::matches`):
//! - `matches` returns exactly the model's plain subscriptions and queue members, grouped by
//!   queue name, as multisets;
//! - `insert` fails exactly when the subject is invalid, `remove` reports exactly whether an
//!   equal subscription was there;
//! - `len`, `is_empty` and `has_interest` agree with the model, and `generation` moves on every
//!   change and only then;
//! - once every subscription is removed the trie is pruned to nothing (`node_count() == 0`).

use std::collections::BTreeMap;

use fjord_core::subject;
use fjord_core::sublist::Sublist;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOKENS: &[&str] = &["a", "b", "c", "foo", "*", ">", ""];
const QUEUES: &[&str] = &["q1", "q2"];

type Sub = (Vec<u8>, Option<Vec<u8>>, u32);

fn pattern(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = rng.random_range(1..=4);
    let toks: Vec<&str> = (0..n).map(|_| TOKENS[rng.random_range(0..TOKENS.len())]).collect();
    let mut s = toks.join(".");
    if rng.random_bool(0.02) {
        s.push(' ');
    }
    s.into_bytes()
}

fn literal(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = rng.random_range(1..=5);
    let toks: Vec<&str> = (0..n).map(|_| TOKENS[rng.random_range(0..4)]).collect();
    toks.join(".").into_bytes()
}

/// (plain values, queue name -> member values), each sorted.
fn model_match(model: &[Sub], subject: &[u8]) -> (Vec<u32>, BTreeMap<Vec<u8>, Vec<u32>>) {
    let mut plain = Vec::new();
    let mut queues: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
    for (pat, queue, v) in model {
        if subject::matches(pat, subject) {
            match queue {
                None => plain.push(*v),
                Some(q) => queues.entry(q.clone()).or_default().push(*v),
            }
        }
    }
    plain.sort_unstable();
    for members in queues.values_mut() {
        members.sort_unstable();
    }
    (plain, queues)
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut list: Sublist<u32> = Sublist::new();
    let mut model: Vec<Sub> = Vec::new();
    let steps = rng.random_range(1..200);
    for step in 0..steps {
        let before = list.generation();
        let mut changed = false;
        match rng.random_range(0..10) {
            0..=3 => {
                let pat = pattern(&mut rng);
                let queue = rng
                    .random_bool(0.3)
                    .then(|| QUEUES[rng.random_range(0..QUEUES.len())].as_bytes().to_vec());
                let value = rng.random_range(0..8);
                let valid = subject::validate_subscription(&pat).is_ok();
                let got = list.insert(&pat, queue.as_deref(), value);
                if got.is_ok() != valid {
                    return Err(format!(
                        "step {step}: insert {:?} gave {got:?}, validation says {valid}",
                        String::from_utf8_lossy(&pat)
                    ));
                }
                if valid {
                    model.push((pat, queue, value));
                    changed = true;
                }
            }
            4..=6 if !model.is_empty() || rng.random_bool(0.2) => {
                let (pat, queue, value) = if !model.is_empty() && rng.random_bool(0.8) {
                    model[rng.random_range(0..model.len())].clone()
                } else {
                    (pattern(&mut rng), None, rng.random_range(0..8))
                };
                let present = model.iter().position(|s| *s == (pat.clone(), queue.clone(), value));
                let got = list.remove(&pat, queue.as_deref(), &value);
                if got != present.is_some() {
                    return Err(format!(
                        "step {step}: remove {:?} queue {queue:?} value {value} returned {got}, the model says {}",
                        String::from_utf8_lossy(&pat),
                        present.is_some()
                    ));
                }
                if let Some(i) = present {
                    model.swap_remove(i);
                    changed = true;
                }
            }
            _ => {
                let subj = literal(&mut rng);
                let got = list.matches(&subj);
                let mut plain = got.plain.clone();
                plain.sort_unstable();
                let mut queues: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
                for q in &got.queues {
                    if q.members.is_empty() {
                        continue;
                    }
                    let e = queues.entry(q.name.clone()).or_default();
                    if !e.is_empty() {
                        return Err(format!(
                            "step {step}: queue group {:?} returned twice",
                            q.name
                        ));
                    }
                    e.extend(&q.members);
                    e.sort_unstable();
                }
                let want = model_match(&model, &subj);
                if (plain.clone(), queues.clone()) != want {
                    return Err(format!(
                        "step {step}: matches({:?}) = plain {plain:?} queues {queues:?}, the model says {want:?}",
                        String::from_utf8_lossy(&subj)
                    ));
                }
                let interest = !want.0.is_empty() || !want.1.is_empty();
                if list.has_interest(&subj) != interest {
                    return Err(format!(
                        "step {step}: has_interest({:?}) disagrees with matches",
                        String::from_utf8_lossy(&subj)
                    ));
                }
            }
        }
        if changed == (list.generation() == before) {
            return Err(format!(
                "step {step}: generation moved {} a change",
                if changed { "without" } else { "on" }
            ));
        }
        if list.len() != model.len() || list.is_empty() != model.is_empty() {
            return Err(format!(
                "step {step}: len {} but the model holds {}",
                list.len(),
                model.len()
            ));
        }
        if model.is_empty() && list.node_count() != 0 {
            return Err(format!("step {step}: empty index keeps {} trie nodes", list.node_count()));
        }
    }
    Ok(())
}
