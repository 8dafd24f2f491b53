//! The subscription index: a trie of subject tokens with `*` and `>` wildcards and queue groups.

use rustc_hash::FxHashMap;

use crate::subject::{self, tokens, SubjectError, GREATER, STAR};

/// The subscriptions that match one published subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchResult<T> {
    /// Plain subscriptions: each gets the message.
    pub plain: Vec<T>,
    /// Queue groups: one member of each gets the message.
    pub queues: Vec<QueueGroup<T>>,
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        MatchResult { plain: Vec::new(), queues: Vec::new() }
    }
}

impl<T> MatchResult<T> {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.iter().all(|q| q.members.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueGroup<T> {
    pub name: Vec<u8>,
    pub members: Vec<T>,
}

/// The index. `T` identifies one subscription (the runtime stores a handle to the
/// subscriber's connection; the simulator a (client, sid) pair).
///
/// Structure: a trie with one node per token of a subscribed subject. Each node has three kinds
/// of children: literal tokens in a hash map (one lookup per token of a published subject), and
/// one slot each for `*` and `>`, kept apart so matching never has to scan the map for them.
/// The root is the level of first tokens. A node holds the subscriptions whose subject ends
/// there: plain ones in a list, queue ones grouped by queue name.
///
/// Matching walks the literal subject down the literal children, branching into the `*` child
/// at every level and collecting the `>` child's subscriptions at every level (it matches all
/// remaining tokens). Queue members found under different patterns merge into one
/// [`QueueGroup`] per name, since a queue group is defined by its name, not its pattern.
///
/// The index is a multiset: inserting an equal subscription twice (same subject, queue and
/// value) stores two entries, both returned by [`Sublist::matches`], and [`Sublist::remove`]
/// takes out one of them. Callers that want set semantics avoid duplicate inserts. The order
/// of the subscriptions within a result is unspecified.
///
/// Removing the last subscription below a node prunes every node left empty, so the trie's
/// size follows the live subscriptions, not their history.
pub struct Sublist<T> {
    root: Node<T>,
    count: usize,
    generation: u64,
}

struct Node<T> {
    literal: FxHashMap<Box<[u8]>, Node<T>>,
    star: Option<Box<Node<T>>>,
    greater: Option<Box<Node<T>>>,
    plain: Vec<T>,
    /// Few groups per subject in practice, so a list beats a map; names are unique.
    queues: Vec<Queue<T>>,
}

struct Queue<T> {
    name: Box<[u8]>,
    members: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: FxHashMap::default(),
            star: None,
            greater: None,
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

/// The derived drop would recurse once per token and overflow the stack on a trie made from
/// one long subject; this one keeps its own stack.
impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        if self.child_count() == 0 {
            return;
        }
        let mut detached = Vec::new();
        self.detach_children(&mut detached);
        while let Some(mut node) = detached.pop() {
            node.detach_children(&mut detached);
        }
    }
}

impl<T> Node<T> {
    fn detach_children(&mut self, into: &mut Vec<Node<T>>) {
        into.extend(self.literal.drain().map(|(_, child)| child));
        into.extend(self.star.take().map(|child| *child));
        into.extend(self.greater.take().map(|child| *child));
    }

    fn has_subscriptions(&self) -> bool {
        !self.plain.is_empty() || !self.queues.is_empty()
    }

    fn child_count(&self) -> usize {
        self.literal.len() + usize::from(self.star.is_some()) + usize::from(self.greater.is_some())
    }

    fn is_empty(&self) -> bool {
        !self.has_subscriptions() && self.child_count() == 0
    }

    fn child(&self, token: &[u8]) -> Option<&Node<T>> {
        match token {
            STAR => self.star.as_deref(),
            GREATER => self.greater.as_deref(),
            _ => self.literal.get(token),
        }
    }

    fn child_mut(&mut self, token: &[u8]) -> Option<&mut Node<T>> {
        match token {
            STAR => self.star.as_deref_mut(),
            GREATER => self.greater.as_deref_mut(),
            _ => self.literal.get_mut(token),
        }
    }

    fn child_or_insert(&mut self, token: &[u8]) -> &mut Node<T> {
        match token {
            STAR => self.star.get_or_insert_with(Box::default),
            GREATER => self.greater.get_or_insert_with(Box::default),
            // Allocates the key even when present (a hit-then-insert needs Polonius); this
            // runs once per SUB, never per message.
            _ => self.literal.entry(Box::from(token)).or_default(),
        }
    }

    fn remove_child(&mut self, token: &[u8]) {
        match token {
            STAR => self.star = None,
            GREATER => self.greater = None,
            _ => {
                self.literal.remove(token);
                // A node that once had a huge fan-out must not keep its table forever.
                if self.literal.capacity() > 16 && self.literal.len() < self.literal.capacity() / 4
                {
                    self.literal.shrink_to(self.literal.len() * 2);
                }
            }
        }
    }
}

/// Removes one entry equal to `value`. Searches from the back: recent subscriptions are the
/// likeliest to go first (request/reply inboxes).
fn remove_one<T: PartialEq>(list: &mut Vec<T>, value: &T) -> bool {
    let Some(i) = list.iter().rposition(|x| x == value) else {
        return false;
    };
    list.swap_remove(i);
    if list.capacity() > 16 && list.len() < list.capacity() / 4 {
        list.shrink_to(list.len() * 2);
    }
    true
}

fn collect<T: Clone>(out: &mut MatchResult<T>, node: &Node<T>) {
    out.plain.extend(node.plain.iter().cloned());
    if out.queues.is_empty() {
        // A node's queue names are unique: nothing to merge with yet.
        out.queues.extend(
            node.queues
                .iter()
                .map(|q| QueueGroup { name: q.name.to_vec(), members: q.members.clone() }),
        );
        return;
    }
    for queue in &node.queues {
        match out.queues.iter_mut().find(|g| g.name[..] == queue.name[..]) {
            Some(group) => group.members.extend(queue.members.iter().cloned()),
            None => out
                .queues
                .push(QueueGroup { name: queue.name.to_vec(), members: queue.members.clone() }),
        }
    }
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Sublist<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sublist")
            .field("len", &self.count)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + PartialEq> Sublist<T> {
    pub fn new() -> Self {
        Sublist { root: Node::default(), count: 0, generation: 0 }
    }

    /// Adds a subscription. The subject must pass `validate_subscription`.
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: T,
    ) -> Result<(), SubjectError> {
        subject::validate_subscription(subject)?;
        let mut node = &mut self.root;
        for token in tokens(subject) {
            node = node.child_or_insert(token);
        }
        match queue {
            None => node.plain.push(value),
            Some(name) => match node.queues.iter_mut().find(|q| &*q.name == name) {
                Some(group) => group.members.push(value),
                None => node.queues.push(Queue { name: Box::from(name), members: vec![value] }),
            },
        }
        self.count += 1;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Removes one subscription equal to `value`; false if it was not there.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, value: &T) -> bool {
        if subject::validate_subscription(subject).is_err() {
            return false;
        }
        let mut node = &mut self.root;
        for token in tokens(subject) {
            match node.child_mut(token) {
                Some(child) => node = child,
                None => return false,
            }
        }
        let removed = match queue {
            None => remove_one(&mut node.plain, value),
            Some(name) => match node.queues.iter().position(|q| &*q.name == name) {
                None => false,
                Some(i) => {
                    let removed = remove_one(&mut node.queues[i].members, value);
                    if node.queues[i].members.is_empty() {
                        node.queues.swap_remove(i);
                    }
                    removed
                }
            },
        };
        if !removed {
            return false;
        }
        self.prune(subject);
        self.count -= 1;
        self.generation = self.generation.wrapping_add(1);
        true
    }

    /// Detaches the longest chain of nodes, ending at `subject`'s node, that holds nothing but
    /// the chain itself.
    fn prune(&mut self, subject: &[u8]) {
        // First find how high the chain reaches with shared borrows, then detach it with one
        // mutable walk: no recursion, so a subject of any length is safe.
        let mut node = &self.root;
        let mut depth = 0usize;
        let mut chain_top: Option<usize> = None;
        for token in tokens(subject) {
            if depth > 0 {
                if !node.has_subscriptions() && node.child_count() == 1 {
                    chain_top.get_or_insert(depth);
                } else {
                    chain_top = None;
                }
            }
            node = match node.child(token) {
                Some(child) => child,
                None => return,
            };
            depth += 1;
        }
        if !node.is_empty() {
            return;
        }
        let top = chain_top.unwrap_or(depth);
        let mut parent = &mut self.root;
        let mut path = tokens(subject);
        for token in path.by_ref().take(top.saturating_sub(1)) {
            match parent.child_mut(token) {
                Some(child) => parent = child,
                None => return,
            }
        }
        if let Some(token) = path.next() {
            parent.remove_child(token);
        }
    }

    /// Calls `visit` on every node whose subscriptions match `subject`, until it returns true.
    fn walk<'a>(&'a self, subject: &[u8], mut visit: impl FnMut(&'a Node<T>) -> bool) {
        if !subject::is_matchable(subject) {
            return;
        }
        // Branches into `*` children wait here; the literal path is followed in place, so
        // the common subscription set (no `*` on the path) never allocates.
        let mut pending: Vec<(&Node<T>, usize)> = Vec::new();
        let mut next = Some((&self.root, 0usize));
        while let Some((mut node, mut start)) = next.take().or_else(|| pending.pop()) {
            loop {
                // `start` is 0 or just past a dot that is not the last byte (is_matchable).
                let rest = &subject[start..];
                let end = rest.iter().position(|&b| b == b'.').map_or(subject.len(), |i| start + i);
                let last = end == subject.len();
                if let Some(greater) = &node.greater {
                    if visit(greater) {
                        return;
                    }
                }
                if let Some(star) = &node.star {
                    if last {
                        if visit(star) {
                            return;
                        }
                    } else {
                        pending.push((star, end + 1));
                    }
                }
                let Some(child) = node.literal.get(&subject[start..end]) else {
                    break;
                };
                if last {
                    if visit(child) {
                        return;
                    }
                    break;
                }
                node = child;
                start = end + 1;
            }
        }
    }

    /// Every subscription whose subject matches the literal `subject`.
    ///
    /// A subject with an empty token matches nothing. Wildcard tokens in `subject` are taken as
    /// literal tokens: they match `*` and `>` subscriptions, and a subscription to the same
    /// wildcard only through those (e.g. `a.*` matches the subscriptions `a.*` and `a.>`, not
    /// `a.b`), as in nats-server.
    pub fn matches(&self, subject: &[u8]) -> MatchResult<T> {
        let mut out = MatchResult::default();
        self.walk(subject, |node| {
            collect(&mut out, node);
            false
        });
        out
    }

    /// True if any subscription matches `subject`; cheaper than [`Sublist::matches`].
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        let mut found = false;
        self.walk(subject, |node| {
            found = node.has_subscriptions();
            found
        });
        found
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bumped by every insert and remove, so cached match results can be validated.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Trie nodes below the root, by walking the trie (O(nodes)): for memory metrics and for
    /// checking that removals prune.
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.child_count();
            stack.extend(node.literal.values());
            stack.extend(node.star.as_deref());
            stack.extend(node.greater.as_deref());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    type Normalized = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);

    /// The result with every list sorted, and groups sorted by name, for comparison.
    fn normalize(r: &MatchResult<u32>) -> Normalized {
        let mut queues: Vec<_> =
            r.queues.iter().map(|g| (g.name.clone(), sorted(&g.members))).collect();
        queues.sort();
        (sorted(&r.plain), queues)
    }

    fn plain(list: &Sublist<u32>, subject: &str) -> Vec<u32> {
        let r = list.matches(subject.as_bytes());
        assert!(r.queues.is_empty());
        sorted(&r.plain)
    }

    #[test]
    fn literal_and_wildcard_matching() {
        let mut l = Sublist::new();
        for (i, s) in ["foo.bar", "foo.*", "foo.>", "*.bar", ">", "foo", "foo.bar.baz", "*.*.>"]
            .iter()
            .enumerate()
        {
            l.insert(s.as_bytes(), None, i as u32).unwrap();
        }
        assert_eq!(l.len(), 8);
        assert_eq!(plain(&l, "foo.bar"), vec![0, 1, 2, 3, 4]);
        assert_eq!(plain(&l, "foo"), vec![4, 5]);
        assert_eq!(plain(&l, "foo.bar.baz"), vec![2, 4, 6, 7]);
        assert_eq!(plain(&l, "foo.baz"), vec![1, 2, 4]);
        assert_eq!(plain(&l, "x.bar"), vec![3, 4]);
        assert_eq!(plain(&l, "x.y.z.w"), vec![4, 7]);
        assert_eq!(plain(&l, "Foo"), vec![4]);
        assert!(l.has_interest(b"anything"));
        l.remove(b">", None, &4);
        assert!(!l.has_interest(b"x"));
        assert!(l.has_interest(b"x.y.z"));
    }

    #[test]
    fn wildcards_in_published_subject_are_literal_tokens() {
        let mut l = Sublist::new();
        l.insert(b"a.b", None, 1u32).unwrap();
        l.insert(b"a.*", None, 2).unwrap();
        l.insert(b"a.>", None, 3).unwrap();
        l.insert(b"a*.b", None, 4).unwrap();
        assert_eq!(plain(&l, "a.*"), vec![2, 3]);
        assert_eq!(plain(&l, "a.>"), vec![2, 3]);
        assert_eq!(plain(&l, "a*.b"), vec![4]);
        assert_eq!(plain(&l, "*.b"), Vec::<u32>::new());
        assert_eq!(plain(&l, "a.>.c"), vec![3]);
    }

    #[test]
    fn malformed_subjects_match_nothing() {
        let mut l = Sublist::new();
        l.insert(b">", None, 1u32).unwrap();
        l.insert(b"*", None, 2).unwrap();
        for s in ["", ".", "..", "a..b", ".a", "a.", "a.b."] {
            assert!(l.matches(s.as_bytes()).is_empty(), "{s:?}");
            assert!(!l.has_interest(s.as_bytes()), "{s:?}");
        }
        // nats-server does not check whitespace when matching either.
        assert_eq!(plain(&l, "a b"), vec![1, 2]);
    }

    #[test]
    fn queue_groups_merge_by_name_across_patterns() {
        let mut l = Sublist::new();
        l.insert(b"foo.bar", Some(b"workers"), 1u32).unwrap();
        l.insert(b"foo.*", Some(b"workers"), 2).unwrap();
        l.insert(b"foo.>", Some(b"workers"), 3).unwrap();
        l.insert(b"foo.>", Some(b"audit"), 4).unwrap();
        l.insert(b"foo.bar", None, 5).unwrap();
        l.insert(b"foo.baz", Some(b"workers"), 6).unwrap();
        let r = l.matches(b"foo.bar");
        assert_eq!(
            normalize(&r),
            (vec![5], vec![(b"audit".to_vec(), vec![4]), (b"workers".to_vec(), vec![1, 2, 3])])
        );
        assert!(l.remove(b"foo.>", Some(b"audit"), &4));
        let r = l.matches(b"foo.bar");
        assert_eq!(normalize(&r), (vec![5], vec![(b"workers".to_vec(), vec![1, 2, 3])]));
        // Same value under the wrong queue, or no queue, is a different subscription.
        assert!(!l.remove(b"foo.bar", None, &1));
        assert!(!l.remove(b"foo.bar", Some(b"other"), &1));
        assert!(l.remove(b"foo.bar", Some(b"workers"), &1));
        let r = l.matches(b"foo.bar");
        assert_eq!(normalize(&r), (vec![5], vec![(b"workers".to_vec(), vec![2, 3])]));
    }

    #[test]
    fn duplicates_are_separate_entries() {
        let mut l = Sublist::new();
        l.insert(b"a.b", None, 7u32).unwrap();
        l.insert(b"a.b", None, 7).unwrap();
        l.insert(b"a.b", Some(b"q"), 7).unwrap();
        l.insert(b"a.b", Some(b"q"), 7).unwrap();
        assert_eq!(l.len(), 4);
        let r = l.matches(b"a.b");
        assert_eq!(normalize(&r), (vec![7, 7], vec![(b"q".to_vec(), vec![7, 7])]));
        assert!(l.remove(b"a.b", None, &7));
        assert!(l.remove(b"a.b", Some(b"q"), &7));
        let r = l.matches(b"a.b");
        assert_eq!(normalize(&r), (vec![7], vec![(b"q".to_vec(), vec![7])]));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn generation_counts_successful_changes_only() {
        let mut l = Sublist::new();
        assert_eq!(l.generation(), 0);
        l.insert(b"a", None, 1u32).unwrap();
        assert_eq!(l.generation(), 1);
        assert_eq!(l.insert(b"a..b", None, 1), Err(SubjectError::EmptyToken));
        assert_eq!(l.insert(b"a.>.b", None, 1), Err(SubjectError::FullWildcardNotLast));
        assert_eq!(l.insert(b"", None, 1), Err(SubjectError::Empty));
        assert_eq!(l.insert(b"a b", None, 1), Err(SubjectError::Whitespace));
        assert_eq!(l.generation(), 1);
        assert!(!l.remove(b"a", None, &2));
        assert!(!l.remove(b"b", None, &1));
        assert!(!l.remove(b"a..", None, &1));
        assert_eq!(l.generation(), 1);
        assert!(l.remove(b"a", None, &1));
        assert_eq!(l.generation(), 2);
        assert!(l.is_empty());
    }

    #[test]
    fn removal_prunes_empty_nodes() {
        let mut l = Sublist::new();
        let subjects = ["a.b.c.d", "a.b", "a.*.c", "a.>", "*.*.*", ">", "x.y.z", "a.b.c.e"];
        for round in 0..3u32 {
            for (i, s) in subjects.iter().enumerate() {
                l.insert(s.as_bytes(), None, i as u32).unwrap();
                l.insert(s.as_bytes(), Some(b"q"), i as u32 + round).unwrap();
            }
            assert!(l.node_count() > 0);
            // Remove in an order that leaves shared prefixes in place for a while.
            for (i, s) in subjects.iter().enumerate().rev() {
                assert!(l.remove(s.as_bytes(), None, &(i as u32)));
                assert!(l.remove(s.as_bytes(), Some(b"q"), &(i as u32 + round)));
            }
            assert_eq!(l.node_count(), 0);
            assert!(l.is_empty());
        }
        // A node that still holds subscriptions, or another child, stops the pruning.
        l.insert(b"a.b.c", None, 1).unwrap();
        l.insert(b"a", None, 2).unwrap();
        l.insert(b"a.x.y", None, 3).unwrap();
        assert_eq!(l.node_count(), 5);
        l.remove(b"a.b.c", None, &1);
        assert_eq!(l.node_count(), 3);
        l.remove(b"a.x.y", None, &3);
        assert_eq!(l.node_count(), 1);
        l.remove(b"a", None, &2);
        assert_eq!(l.node_count(), 0);
    }

    #[test]
    fn churn_does_not_grow_the_trie() {
        let mut l = Sublist::new();
        l.insert(b"svc.>", Some(b"q"), 0u32).unwrap();
        for i in 0..10_000u32 {
            let inbox = format!("_INBOX.{i}.reply");
            l.insert(inbox.as_bytes(), None, i).unwrap();
            assert_eq!(plain(&l, &inbox), vec![i]);
            assert!(l.remove(inbox.as_bytes(), None, &i));
        }
        assert_eq!(l.node_count(), 2);
        assert!(l.root.literal.capacity() < 16);
    }

    #[test]
    fn long_subjects_do_not_overflow_the_stack() {
        let mut l = Sublist::new();
        let stars = vec!["*"; 20_000].join(".");
        let literal = vec!["a"; 20_000].join(".");
        l.insert(stars.as_bytes(), None, 1u32).unwrap();
        l.insert(literal.as_bytes(), None, 2).unwrap();
        assert_eq!(plain(&l, &literal), vec![1, 2]);
        assert!(l.remove(stars.as_bytes(), None, &1));
        assert!(l.remove(literal.as_bytes(), None, &2));
        assert_eq!(l.node_count(), 0);
        // Dropping a deep trie whole, too.
        let mut deep = Sublist::new();
        deep.insert(literal.as_bytes(), None, 1u32).unwrap();
        deep.insert(stars.as_bytes(), Some(b"q"), 2).unwrap();
        drop(deep);
    }

    const TOKENS: &[&str] = &["a", "b", "c", "*", ">"];

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 1..=4).prop_map(|mut tokens| {
            if let Some(i) = tokens.iter().position(|t| *t == ">") {
                tokens.truncate(i + 1);
            }
            tokens.join(".")
        })
    }

    /// Literal subjects, sometimes with wildcard tokens (matched as literals) or the `d`
    /// token that no pattern names.
    fn subject() -> impl Strategy<Value = String> {
        let token = prop::sample::select(&["a", "b", "c", "d", "*", ">"][..]);
        prop::collection::vec(token, 1..=5).prop_map(|t| t.join("."))
    }

    fn queue() -> impl Strategy<Value = Option<&'static str>> {
        prop::sample::select(&[None, None, Some("q1"), Some("q2")][..])
    }

    proptest! {
        #[test]
        fn agrees_with_naive_scan(
            subs in prop::collection::vec((pattern(), queue(), 0u32..8), 0..40),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
            subjects in prop::collection::vec(subject(), 1..20),
        ) {
            let mut list = Sublist::new();
            let mut model: Vec<(String, Option<&str>, u32)> = Vec::new();
            for (p, q, v) in &subs {
                list.insert(p.as_bytes(), q.map(str::as_bytes), *v).unwrap();
                model.push((p.clone(), *q, *v));
            }
            for r in &removals {
                if model.is_empty() {
                    break;
                }
                let (p, q, v) = model.remove(r.index(model.len()));
                prop_assert!(list.remove(p.as_bytes(), q.map(str::as_bytes), &v));
            }
            prop_assert_eq!(list.len(), model.len());
            for s in &subjects {
                let mut plain = Vec::new();
                let mut queues: Vec<(Vec<u8>, Vec<u32>)> = Vec::new();
                for (p, q, v) in &model {
                    if !subject::matches(p.as_bytes(), s.as_bytes()) {
                        continue;
                    }
                    match q {
                        None => plain.push(*v),
                        Some(q) => match queues.iter_mut().find(|g| g.0 == q.as_bytes()) {
                            Some(g) => g.1.push(*v),
                            None => queues.push((q.as_bytes().to_vec(), vec![*v])),
                        },
                    }
                }
                let expected = (sorted(&plain), {
                    let mut qs: Vec<_> = queues.into_iter().map(|(n, m)| (n, sorted(&m))).collect();
                    qs.sort();
                    qs
                });
                let got = list.matches(s.as_bytes());
                prop_assert_eq!(list.has_interest(s.as_bytes()), !got.is_empty());
                prop_assert_eq!(normalize(&got), expected, "subject {}", s);
            }
            for (p, q, v) in std::mem::take(&mut model) {
                prop_assert!(list.remove(p.as_bytes(), q.map(str::as_bytes), &v));
            }
            prop_assert_eq!(list.node_count(), 0);
            prop_assert!(list.is_empty());
        }

        #[test]
        fn never_panics(
            subs in prop::collection::vec(prop::collection::vec(prop::sample::select(&b"ab.*> "[..]), 0..8), 0..10),
            probes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..10),
        ) {
            let mut list = Sublist::new();
            for (i, s) in subs.iter().enumerate() {
                let _ = list.insert(s, None, i);
                let _ = list.matches(s);
            }
            for p in &probes {
                let _ = list.matches(p);
                let _ = list.remove(p, None, &0);
            }
        }
    }
}
