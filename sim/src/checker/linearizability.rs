//! Linearizability of a key-value register history: a Wing & Gong search with Lowe's
//! memoisation, in the style of porcupine, partitioned by key.
//!
//! The history is what clients saw: each operation with the client that issued it, the time it
//! was invoked, and either the time it returned with its output or no return at all (the client
//! timed out or crashed). Every operation touches one key, and a register's history is
//! linearizable exactly when each key's sub-history is (linearizability is local), so each key
//! is checked on its own, in key order.
//!
//! The model: every key starts absent; `get(k)` returns the value or `None`; `put(k, v)` sets
//! it; `cas(k, expected, new)` sets `new` and returns `true` when the current value equals
//! `expected` (`None` meaning absent), else changes nothing and returns `false`.
//!
//! An operation with no return may have taken effect at any time after its invocation, or never
//! (porcupine's "return at +infinity"): the search must place every returned operation and may
//! place any unreturned one. An unreturned `get` constrains nothing and is dropped; an
//! unreturned `cas` takes effect only if its expectation holds where it is placed.
//!
//! Real time: an operation precedes another when it returned strictly before the other was
//! invoked; operations whose intervals touch at one instant are concurrent.
//!
//! The search: events (invocations and returns) in time order in a linked list; walking it, an
//! invocation whose operation the model accepts in the current state is linearized (lifted from
//! the list) and the walk restarts; reaching a return of an operation not yet linearized means
//! the last choice was wrong, so it is undone and the walk continues after it. A set of
//! (linearized operations, model state) already explored is never explored again, and each key
//! has a step budget: a history too big or too pathological to decide within it is reported as
//! [`Verdict::Unknown`], never as a pass.
//!
//! A failure is explained: the key, the returned operation whose response first makes the key's
//! history impossible (the shortest failing prefix of its events, found by bisection, since
//! every prefix of a linearizable history is linearizable), and that prefix with every read and
//! failed `cas` that is not needed to show the contradiction removed (they change no state, so
//! what remains is still a true witness), with the longest order the search found for it.

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display};
use std::hash::Hash;

use rustc_hash::{FxHashMap, FxHashSet};

/// What a key must be: ordered, so keys are checked and reported in a deterministic order.
pub trait KvKey: Ord + Clone + Debug {}
impl<T: Ord + Clone + Debug> KvKey for T {}

/// What a value must be: hashable, for the memo of explored (operations, state) pairs.
pub trait KvValue: Eq + Hash + Clone + Debug {}
impl<T: Eq + Hash + Clone + Debug> KvValue for T {}

/// An operation as invoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCall<K, V> {
    Get { key: K },
    Put { key: K, value: V },
    Cas { key: K, expected: Option<V>, new: V },
}

impl<K, V> KvCall<K, V> {
    pub fn key(&self) -> &K {
        match self {
            KvCall::Get { key } | KvCall::Put { key, .. } | KvCall::Cas { key, .. } => key,
        }
    }
}

/// An operation's output, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvReturn<V> {
    Get(Option<V>),
    Put,
    Cas(bool),
}

/// A return: when the client saw it and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion<V> {
    pub at: u64,
    pub output: KvReturn<V>,
}

/// One operation of a history. Times are in one unit for the whole history (the simulator's
/// global nanoseconds, never a node's local clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp<K, V> {
    pub client: u64,
    pub call: KvCall<K, V>,
    pub invoked: u64,
    /// `None`: no return (timed out, crashed): it may take effect late or never.
    pub returned: Option<Completion<V>>,
}

impl<K: Debug, V: Debug> Display for KvOp<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        match &self.call {
            KvCall::Get { key } => write!(f, "get({key:?})")?,
            KvCall::Put { key, value } => write!(f, "put({key:?}, {value:?})")?,
            KvCall::Cas { key, expected, new } => write!(f, "cas({key:?}, {expected:?}, {new:?})")?,
        }
        match &self.returned {
            Some(Completion { at, output }) => {
                match output {
                    KvReturn::Get(v) => write!(f, " -> {v:?}")?,
                    KvReturn::Put => write!(f, " -> ok")?,
                    KvReturn::Cas(b) => write!(f, " -> {b}")?,
                }
                write!(f, " [{}, {}]", self.invoked, at)
            }
            None => write!(f, " -> (no return) [{}, never]", self.invoked),
        }
    }
}

/// How much work the checker may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Search steps (tried linearizations) per key before the key is reported undecided.
    pub steps_per_key: u64,
    /// Search steps spent, in total, on shrinking a failure to a small explanation; when spent,
    /// the explanation is shown as far as it got (and says so).
    pub explain_steps: u64,
    /// Refute a read of a value no write could have produced yet without searching (sound;
    /// off only to test the search itself).
    pub quick_refutation: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { steps_per_key: 1_000_000, explain_steps: 5_000_000, quick_refutation: true }
    }
}

/// A history the checker cannot read: an operation whose output does not match its call, or
/// that returned before it was invoked. `op` is its position in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    pub op: usize,
    pub reason: String,
}

impl Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed history: operation #{}: {}", self.op, self.reason)
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<K, V> {
    /// Every key's history is linearizable.
    Linearizable,
    /// A key's history is not (the first such key in key order, explained).
    NotLinearizable(Box<Counterexample<K, V>>),
    /// No key failed, but the search ran out of budget on these keys before deciding: this is
    /// not a pass; the history was too big or too pathological to check.
    Unknown { keys: Vec<K> },
}

/// The verdict with what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report<K, V> {
    pub verdict: Verdict<K, V>,
    /// Every key found not linearizable, in key order (the verdict explains the first).
    pub failed_keys: Vec<K>,
    /// Keys whose search ran out of budget, in key order.
    pub undecided_keys: Vec<K>,
    pub keys: usize,
    pub ops: usize,
    /// Search steps spent deciding (not counting the explanation).
    pub steps: u64,
}

/// Why a key's history is not linearizable. Operations are shown with their position in the
/// history (`#n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample<K, V> {
    pub key: K,
    /// The returned operation whose response first cannot be explained: the key's history cut
    /// just after its return (operations still running then count as unreturned) cannot be
    /// linearized; cut just before it, it can.
    pub culprit: (usize, KvOp<K, V>),
    /// A small history that cannot be linearized: that cut, less the reads, failed `cas` and
    /// unobserved writes not needed to show it, in invocation order. Operations the cut left running appear
    /// with their real return (if any); the search treated them as unreturned.
    pub ops: Vec<(usize, KvOp<K, V>)>,
    /// The longest order of `ops` the search could build before getting stuck (history
    /// positions): the point at which no remaining operation can go next.
    pub longest_order: Vec<usize>,
    /// The cut's size before the unneeded reads were removed.
    pub prefix_ops: usize,
    /// False when the explanation budget ran out (or a shrinking step was undecided), so
    /// `ops` may be larger than necessary.
    pub minimal: bool,
    /// Why, when a quick check found it without a search.
    pub note: Option<String>,
}

impl<K: Debug, V: Debug> Display for Counterexample<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable: no order of its operations explains #{} {}",
            self.key, self.culprit.0, self.culprit.1
        )?;
        writeln!(
            f,
            "{} operations cannot be linearized ({} in the history up to that return{}):",
            self.ops.len(),
            self.prefix_ops,
            if self.minimal { "" } else { "; shrinking stopped early" }
        )?;
        for (i, op) in &self.ops {
            let cut = op.returned.as_ref().is_some_and(|c| {
                (c.at, 1, *i)
                    > (self.culprit.1.returned.as_ref().map_or(0, |r| r.at), 1, self.culprit.0)
            });
            writeln!(f, "  #{i} {op}{}", if cut { " (still running at the cut)" } else { "" })?;
        }
        if let Some(note) = &self.note {
            return write!(f, "{note}");
        }
        let order: Vec<String> = self.longest_order.iter().map(|i| format!("#{i}")).collect();
        write!(f, "longest order found: [{}]", order.join(", "))
    }
}

impl<K: Debug, V: Debug> Display for Verdict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(c) => write!(f, "{c}"),
            Verdict::Unknown { keys } => {
                write!(f, "undecided: the search ran out of budget on keys {keys:?}")
            }
        }
    }
}

/// Checks a history. Deterministic: keys in key order, operations in history order for ties.
pub fn check<K: KvKey, V: KvValue>(
    history: &[KvOp<K, V>],
    limits: Limits,
) -> Result<Report<K, V>, HistoryError> {
    let mut by_key: BTreeMap<&K, Vec<SearchOp<V>>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Some(search_op) = SearchOp::from_op(i, op)? {
            by_key.entry(op.call.key()).or_default().push(search_op);
        }
    }
    let keys: BTreeMap<&K, ()> = history.iter().map(|op| (op.call.key(), ())).collect();
    let mut report = Report {
        verdict: Verdict::Linearizable,
        failed_keys: Vec::new(),
        undecided_keys: Vec::new(),
        keys: keys.len(),
        ops: history.len(),
        steps: 0,
    };
    for (key, ops) in &by_key {
        if let Some(culprit) = observed_from_nowhere(ops).filter(|_| limits.quick_refutation) {
            if report.failed_keys.is_empty() {
                let explanation = Counterexample {
                    key: (*key).clone(),
                    culprit: (culprit, history[culprit].clone()),
                    ops: vec![(culprit, history[culprit].clone())],
                    longest_order: Vec::new(),
                    prefix_ops: 1,
                    minimal: true,
                    note: Some(NOWHERE.to_string()),
                };
                report.verdict = Verdict::NotLinearizable(Box::new(explanation));
            }
            report.failed_keys.push((*key).clone());
            continue;
        }
        let mut steps = 0;
        let outcome = search(ops, limits.steps_per_key, &mut steps);
        report.steps += steps;
        match outcome {
            Search::Linearizable => {}
            Search::Unknown => report.undecided_keys.push((*key).clone()),
            Search::NotLinearizable { .. } => {
                if report.failed_keys.is_empty() {
                    let explanation = explain((*key).clone(), ops, history, limits);
                    report.verdict = Verdict::NotLinearizable(Box::new(explanation));
                }
                report.failed_keys.push((*key).clone());
            }
        }
    }
    if report.failed_keys.is_empty() && !report.undecided_keys.is_empty() {
        report.verdict = Verdict::Unknown { keys: report.undecided_keys.clone() };
    }
    Ok(report)
}

const NOWHERE: &str = "it observed a value no write to the key could have produced by then \
    (none was invoked before it returned)";

/// A quick, sound refutation before the search (which must exhaust every order to say no):
/// the first returned operation, by return, that observed a value (a read of it, or a
/// successful cas expecting it) no write of which was invoked by the time it returned.
fn observed_from_nowhere<V: KvValue>(ops: &[SearchOp<V>]) -> Option<usize> {
    // Each value's earliest write invocation (a map only looked up, never iterated).
    let mut first_write: FxHashMap<&V, u64> = FxHashMap::default();
    for o in ops {
        let written = match &o.step {
            Step::Write(v) => v,
            Step::Cas { new, outcome: None | Some(true), .. } => new,
            _ => continue,
        };
        let at = first_write.entry(written).or_insert(o.invoked);
        *at = (*at).min(o.invoked);
    }
    ops.iter()
        .filter_map(|o| {
            let seen = match &o.step {
                Step::Read(Some(v)) => v,
                Step::Cas { expected: Some(v), outcome: Some(true), .. } => v,
                _ => return None,
            };
            let returned = o.return_event()?;
            let produced = first_write.get(seen).is_some_and(|invoked| *invoked <= returned.0);
            (!produced).then_some(returned)
        })
        .min()
        .map(|(_, _, index)| index)
}

/// What the search needs of an operation: its effect on the one key's state.
#[derive(Clone, Debug)]
enum Step<V> {
    Read(Option<V>),
    Write(V),
    /// `outcome: None`: unreturned; it takes effect if its expectation holds where placed.
    Cas {
        expected: Option<V>,
        new: V,
        outcome: Option<bool>,
    },
}

impl<V: KvValue> Step<V> {
    /// The state after this step from `state`, or `None` if the step cannot happen there.
    fn apply(&self, state: &Option<V>) -> Option<Option<V>> {
        match self {
            Step::Read(seen) => (seen == state).then(|| state.clone()),
            Step::Write(v) => Some(Some(v.clone())),
            Step::Cas { expected, new, outcome } => {
                let holds = expected == state;
                match outcome {
                    Some(true) if holds => Some(Some(new.clone())),
                    Some(false) if !holds => Some(state.clone()),
                    Some(_) => None,
                    None if holds => Some(Some(new.clone())),
                    None => Some(state.clone()),
                }
            }
        }
    }

    /// Changes no state whatever the history: removable when shrinking an explanation.
    fn is_read_only(&self) -> bool {
        matches!(self, Step::Read(_) | Step::Cas { outcome: Some(false), .. })
    }

    /// The step as it is while unreturned (for a cut of the history).
    fn unreturned(&self) -> Option<Step<V>> {
        match self {
            Step::Read(_) => None,
            Step::Write(v) => Some(Step::Write(v.clone())),
            Step::Cas { expected, new, .. } => {
                Some(Step::Cas { expected: expected.clone(), new: new.clone(), outcome: None })
            }
        }
    }
}

#[derive(Clone, Debug)]
struct SearchOp<V> {
    /// Position in the whole history.
    index: usize,
    invoked: u64,
    returned: Option<u64>,
    step: Step<V>,
}

impl<V: KvValue> SearchOp<V> {
    /// `Ok(None)` for an unreturned read, which constrains nothing.
    fn from_op<K>(index: usize, op: &KvOp<K, V>) -> Result<Option<Self>, HistoryError> {
        let bad = |reason: &str| HistoryError { op: index, reason: reason.to_string() };
        let output = match &op.returned {
            Some(c) if c.at < op.invoked => return Err(bad("returned before it was invoked")),
            Some(c) => Some(&c.output),
            None => None,
        };
        let step = match (&op.call, output) {
            (KvCall::Get { .. }, None) => return Ok(None),
            (KvCall::Get { .. }, Some(KvReturn::Get(v))) => Step::Read(v.clone()),
            (KvCall::Put { value, .. }, None | Some(KvReturn::Put)) => Step::Write(value.clone()),
            (KvCall::Cas { expected, new, .. }, None) => {
                Step::Cas { expected: expected.clone(), new: new.clone(), outcome: None }
            }
            (KvCall::Cas { expected, new, .. }, Some(KvReturn::Cas(b))) => {
                Step::Cas { expected: expected.clone(), new: new.clone(), outcome: Some(*b) }
            }
            _ => return Err(bad("its output is not of its call's kind")),
        };
        Ok(Some(SearchOp {
            index,
            invoked: op.invoked,
            returned: op.returned.as_ref().map(|c| c.at),
            step,
        }))
    }

    fn call_event(&self) -> EventKey {
        (self.invoked, 0, self.index)
    }

    fn return_event(&self) -> Option<EventKey> {
        self.returned.map(|at| (at, 1, self.index))
    }
}

/// Events in time order: at one instant invocations before returns (touching intervals are
/// concurrent), then history position, so the order is total and deterministic.
type EventKey = (u64, u8, usize);

enum Search {
    Linearizable,
    /// `longest`: the deepest partial linearization reached (positions in the slice searched).
    NotLinearizable {
        longest: Vec<usize>,
    },
    Unknown,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The search for one key. `steps` counts tried linearizations; more than `budget` gives up.
fn search<V: KvValue>(ops: &[SearchOp<V>], budget: u64, steps: &mut u64) -> Search {
    let mut remaining = ops.iter().filter(|o| o.returned.is_some()).count();
    if remaining == 0 {
        return Search::Linearizable;
    }
    // The event list: node 0 is the head; node `n` holds `events[n - 1]`.
    let mut events: Vec<(EventKey, usize, bool)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call_event(), i, true));
        if let Some(r) = op.return_event() {
            events.push((r, i, false));
        }
    }
    events.sort_by_key(|e| e.0);
    let count = events.len() + 1;
    let mut next: Vec<usize> = (1..=count).map(|n| if n == count { NIL } else { n }).collect();
    let mut prev: Vec<usize> = (0..count).map(|n| n.wrapping_sub(1)).collect();
    prev[HEAD] = NIL;
    let mut call_node = vec![NIL; ops.len()];
    let mut return_node = vec![NIL; ops.len()];
    // Each operation's bit in the linearized set: its rank by invocation (see `MemoKey`).
    let mut bit = vec![0; ops.len()];
    let mut rank = 0;
    for (n, (_, op, is_call)) in events.iter().enumerate() {
        if *is_call {
            call_node[*op] = n + 1;
            bit[*op] = rank;
            rank += 1;
        } else {
            return_node[*op] = n + 1;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, n: usize| {
        next[prev[n]] = next[n];
        if next[n] != NIL {
            prev[next[n]] = prev[n];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, n: usize| {
        next[prev[n]] = n;
        if next[n] != NIL {
            prev[next[n]] = n;
        }
    };

    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut memo: FxHashSet<(MemoKey, Option<V>)> = FxHashSet::default();
    let mut state: Option<V> = None;
    let mut stack: Vec<(usize, Option<V>)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut entry = next[HEAD];
    loop {
        let is_call = entry != NIL && events[entry - 1].2;
        if is_call {
            let op = events[entry - 1].1;
            *steps += 1;
            if *steps > budget {
                return Search::Unknown;
            }
            if let Some(after) = ops[op].step.apply(&state) {
                linearized[bit[op] / 64] |= 1 << (bit[op] % 64);
                if memo.insert((memo_key(&linearized), after.clone())) {
                    let before = std::mem::replace(&mut state, after);
                    stack.push((op, before));
                    unlink(&mut next, &mut prev, call_node[op]);
                    if return_node[op] != NIL {
                        unlink(&mut next, &mut prev, return_node[op]);
                        remaining -= 1;
                        if remaining == 0 {
                            return Search::Linearizable;
                        }
                    }
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(o, _)| *o).collect();
                    }
                    entry = next[HEAD];
                    continue;
                }
                linearized[bit[op] / 64] &= !(1 << (bit[op] % 64));
            }
            entry = next[entry];
        } else {
            // A return (or the end) reached with an operation not yet placed: undo the last
            // choice and try the next invocation after it.
            let Some((op, before)) = stack.pop() else {
                return Search::NotLinearizable { longest };
            };
            state = before;
            linearized[bit[op] / 64] &= !(1 << (bit[op] % 64));
            if return_node[op] != NIL {
                relink(&mut next, &mut prev, return_node[op]);
                remaining += 1;
            }
            relink(&mut next, &mut prev, call_node[op]);
            entry = next[call_node[op]];
        }
    }
}

/// A set of linearized operations, compactly: operations are numbered in invocation order,
/// and a linearized set is mostly a run of full words, a
/// few mixed words (the operations in flight), then empty words. Stored as the count of
/// leading full words and the words after them up to the last non-empty one.
type MemoKey = (u32, Box<[u64]>);

fn memo_key(bits: &[u64]) -> MemoKey {
    let full = bits.iter().take_while(|w| **w == u64::MAX).count();
    let end = bits.iter().rposition(|w| *w != 0).map_or(full, |last| (last + 1).max(full));
    (full as u32, bits[full..end].into())
}

/// The key's history cut just after event `cut`: later invocations dropped, operations
/// returning later made unreturned.
fn cut_at<V: KvValue>(ops: &[SearchOp<V>], cut: EventKey) -> Vec<SearchOp<V>> {
    ops.iter()
        .filter(|op| op.call_event() <= cut)
        .filter_map(|op| match op.return_event() {
            Some(r) if r <= cut => Some(op.clone()),
            _ => op.step.unreturned().map(|step| SearchOp { returned: None, step, ..op.clone() }),
        })
        .collect()
}

/// Which operations of a failing history may be removed (any of them together) so that, if
/// what remains still fails, it is a true witness: every linearization of the whole would
/// give one of the rest, so the rest failing means the whole fails for a reason the rest
/// shows. That holds for a read or failed cas (they change no state), and for a write whose
/// value no other operation observes (no read of it, no cas expecting it) while no failed cas
/// remains: dropping it from a linearization leaves the value before it in place until the
/// next write, which nothing then could tell apart (an unreturned cas that would now take
/// effect is left out). Never the culprit.
fn removable<V: KvValue>(sub: &[SearchOp<V>], culprit: usize) -> Vec<bool> {
    let mut observed: FxHashSet<&V> = FxHashSet::default();
    let mut failed_cas = false;
    for o in sub {
        match &o.step {
            Step::Read(Some(v)) => {
                observed.insert(v);
            }
            Step::Cas { expected, outcome, .. } => {
                failed_cas |= *outcome == Some(false);
                if let Some(v) = expected {
                    observed.insert(v);
                }
            }
            _ => {}
        }
    }
    sub.iter()
        .map(|o| {
            o.index != culprit
                && (o.step.is_read_only()
                    || (!failed_cas
                        && match &o.step {
                            Step::Write(v) | Step::Cas { new: v, .. } => !observed.contains(v),
                            Step::Read(_) => false,
                        }))
        })
        .collect()
}

/// Builds the explanation for a key known not to be linearizable.
fn explain<K: KvKey, V: KvValue>(
    key: K,
    ops: &[SearchOp<V>],
    history: &[KvOp<K, V>],
    limits: Limits,
) -> Counterexample<K, V> {
    let mut spent = 0u64;
    let mut minimal = true;
    // Decides a sub-history within both budgets: Some(true) not linearizable, Some(false)
    // linearizable, None undecided.
    let fails = |sub: &[SearchOp<V>], spent: &mut u64| -> Option<bool> {
        if *spent >= limits.explain_steps {
            return None;
        }
        let budget = limits.steps_per_key.min(limits.explain_steps - *spent);
        let mut steps = 0;
        let outcome = search(sub, budget, &mut steps);
        *spent += steps;
        match outcome {
            Search::Linearizable => Some(false),
            Search::NotLinearizable { .. } => Some(true),
            Search::Unknown => None,
        }
    };

    // The shortest failing cut, by bisection over the returns: cut `returns[hi]` is known to
    // fail (the last return's cut is the whole history, less unreturned operations invoked
    // after every return, which constrain nothing).
    let mut returns: Vec<EventKey> = ops.iter().filter_map(|o| o.return_event()).collect();
    returns.sort();
    let (mut lo, mut hi) = (0, returns.len() - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fails(&cut_at(ops, returns[mid]), &mut spent) {
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
            None => {
                minimal = false;
                lo = mid + 1;
            }
        }
    }
    let cut = returns[hi];
    let mut sub = cut_at(ops, cut);
    let prefix_ops = sub.len();
    let culprit = cut.2;

    // Remove what is not needed to show the contradiction, in shrinking chunks (delta
    // debugging), keeping only removals after which the rest is still a true witness (see
    // `removable`); again while a round removes something, as removing reads frees writes.
    for _ in 0..3 {
        let before = sub.len();
        let mut chunk = sub.len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < sub.len() {
                let end = (start + chunk).min(sub.len());
                let can_go = removable(&sub, culprit);
                let gone: Vec<bool> =
                    (0..sub.len()).map(|i| i >= start && i < end && can_go[i]).collect();
                if gone.iter().any(|g| *g) {
                    let candidate: Vec<SearchOp<V>> = sub
                        .iter()
                        .zip(&gone)
                        .filter(|(_, g)| !**g)
                        .map(|(o, _)| o.clone())
                        .collect();
                    match fails(&candidate, &mut spent) {
                        Some(true) => {
                            sub = candidate;
                            continue;
                        }
                        Some(false) => {}
                        None => minimal = false,
                    }
                }
                start = end;
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        if sub.len() == before {
            break;
        }
    }

    // The longest order for what remains (unbudgeted beyond the per-key budget: one search).
    let mut steps = 0;
    let longest_order = match search(&sub, limits.steps_per_key, &mut steps) {
        Search::NotLinearizable { longest } => longest.iter().map(|i| sub[*i].index).collect(),
        _ => Vec::new(),
    };
    let mut shown: Vec<(usize, KvOp<K, V>)> =
        sub.iter().map(|o| (o.index, history[o.index].clone())).collect();
    shown.sort_by_key(|(i, op)| (op.invoked, *i));
    Counterexample {
        key,
        culprit: (culprit, history[culprit].clone()),
        ops: shown,
        longest_order,
        prefix_ops,
        minimal,
        note: None,
    }
}
