//! Subjects: tokens separated by `.`, with the `*` and `>` wildcards.
//!
//! Subjects are raw bytes, as they arrive on the wire; nothing here assumes UTF-8. The rules
//! are nats-server 2.15.1's (`server/sublist.go`):
//!
//! - tokens are separated by `.` and may not be empty (no leading, trailing or double dot);
//! - no whitespace byte (space, TAB, CR, LF, FF) anywhere;
//! - `*` matches exactly one token, `>` one or more tokens and must be the last token;
//! - wildcards count only as whole tokens: `foo*` and `a.b>` are literal tokens;
//! - comparison is byte-exact, so case-sensitive.

/// Why a subject was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectError {
    Empty,
    EmptyToken,
    Whitespace,
    /// `>` not in the last token.
    FullWildcardNotLast,
    /// A wildcard where a literal subject is required.
    Wildcard,
}

impl std::fmt::Display for SubjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubjectError::Empty => "empty subject",
            SubjectError::EmptyToken => "empty token in subject",
            SubjectError::Whitespace => "whitespace in subject",
            SubjectError::FullWildcardNotLast => "'>' is not the last token",
            SubjectError::Wildcard => "wildcard in a literal subject",
        })
    }
}

impl std::error::Error for SubjectError {}

pub const SEPARATOR: u8 = b'.';
/// The single-token wildcard, as a whole token.
pub const STAR: &[u8] = b"*";
/// The full wildcard, as a whole token.
pub const GREATER: &[u8] = b">";

/// The tokens of `subject`, empty ones included (an empty subject yields one empty token), so
/// that callers can detect them.
pub fn tokens(subject: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> + Clone {
    subject.split(|b| *b == SEPARATOR)
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c)
}

fn validate(subject: &[u8], wildcards: bool) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    let mut after_greater = false;
    for token in tokens(subject) {
        if token.is_empty() {
            return Err(SubjectError::EmptyToken);
        }
        if after_greater {
            return Err(SubjectError::FullWildcardNotLast);
        }
        if token.iter().any(|&b| is_whitespace(b)) {
            return Err(SubjectError::Whitespace);
        }
        if token == STAR || token == GREATER {
            if !wildcards {
                return Err(SubjectError::Wildcard);
            }
            after_greater = token == GREATER;
        }
    }
    Ok(())
}

/// A subject a client may subscribe to: wildcards allowed as whole tokens, `>` only last.
pub fn validate_subscription(subject: &[u8]) -> Result<(), SubjectError> {
    validate(subject, true)
}

/// A subject a client may publish to: valid and without wildcard tokens.
pub fn validate_literal(subject: &[u8]) -> Result<(), SubjectError> {
    validate(subject, false)
}

/// True if `subject` has no empty token. Matching refuses anything else, as nats-server does,
/// but does not check for whitespace (nats-server's match does not either).
pub(crate) fn is_matchable(subject: &[u8]) -> bool {
    !subject.is_empty()
        && subject.first() != Some(&SEPARATOR)
        && subject.last() != Some(&SEPARATOR)
        && !subject.windows(2).any(|w| w == b"..")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatternToken<'a> {
    Literal(&'a [u8]),
    Star,
    /// `>` in last position; elsewhere it is a literal token, as in nats-server's matchLiteral,
    /// so a malformed pattern can never match more than its well-formed reading.
    Rest,
}

fn pattern_tokens(pattern: &[u8]) -> impl Iterator<Item = PatternToken<'_>> {
    let mut inner = tokens(pattern).peekable();
    std::iter::from_fn(move || {
        let token = inner.next()?;
        let last = inner.peek().is_none();
        Some(match token {
            STAR => PatternToken::Star,
            GREATER if last => PatternToken::Rest,
            _ => PatternToken::Literal(token),
        })
    })
}

/// Does the literal `subject` match the (possibly wildcard) `pattern`?
///
/// Wildcard tokens in `subject` are compared as literal bytes, so `a.*` as a subject matches
/// the patterns `a.*`, `a.>` and `*.*` but not `a.b`. A subject with an empty token matches
/// nothing.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    if !is_matchable(subject) || pattern.is_empty() {
        return false;
    }
    let mut subject_tokens = tokens(subject);
    for pattern_token in pattern_tokens(pattern) {
        let Some(subject_token) = subject_tokens.next() else {
            return false;
        };
        match pattern_token {
            PatternToken::Rest => return true,
            PatternToken::Star => {}
            PatternToken::Literal(literal) => {
                if literal != subject_token {
                    return false;
                }
            }
        }
    }
    subject_tokens.next().is_none()
}

/// True if every subject matched by the pattern `sub` is also matched by the pattern `of`
/// (`foo.*` ⊂ `foo.>`, `foo.bar` ⊂ `foo.*`, but not `foo.>` ⊂ `foo.*`).
///
/// Permission checks use this to decide whether a wildcard subscription lies wholly inside
/// an allowed subject, so anything malformed (empty tokens) answers false.
pub fn is_subset(sub: &[u8], of: &[u8]) -> bool {
    if !is_matchable(sub) || !is_matchable(of) {
        return false;
    }
    let mut sub_tokens = pattern_tokens(sub);
    let mut of_tokens = pattern_tokens(of);
    loop {
        match (sub_tokens.next(), of_tokens.next()) {
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            // `sub` has a token here, so whatever it matches has at least one token left.
            (Some(_), Some(PatternToken::Rest)) => return true,
            (Some(PatternToken::Rest), Some(_)) => return false,
            (Some(_), Some(PatternToken::Star)) => {}
            (Some(PatternToken::Star), Some(PatternToken::Literal(_))) => return false,
            (Some(PatternToken::Literal(a)), Some(PatternToken::Literal(b))) => {
                if a != b {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Verdict = Result<(), SubjectError>;

    #[test]
    fn validation_edge_cases() {
        use SubjectError::*;
        // (subject, as a subscription, as a literal)
        let cases: &[(&[u8], Verdict, Verdict)] = &[
            (b"", Err(Empty), Err(Empty)),
            (b".", Err(EmptyToken), Err(EmptyToken)),
            (b"a..b", Err(EmptyToken), Err(EmptyToken)),
            (b".a", Err(EmptyToken), Err(EmptyToken)),
            (b"a.", Err(EmptyToken), Err(EmptyToken)),
            (b"a.>", Ok(()), Err(Wildcard)),
            (b"a.>.b", Err(FullWildcardNotLast), Err(Wildcard)),
            (b">.a", Err(FullWildcardNotLast), Err(Wildcard)),
            (b"a.>.", Err(EmptyToken), Err(Wildcard)),
            (b"a*", Ok(()), Ok(())),
            (b"a.b>", Ok(()), Ok(())),
            (b"a.>b.c", Ok(()), Ok(())),
            (b"*", Ok(()), Err(Wildcard)),
            (b">", Ok(()), Err(Wildcard)),
            (b"*.*.>", Ok(()), Err(Wildcard)),
            (b"a.*.c", Ok(()), Err(Wildcard)),
            (b"foo.bar", Ok(()), Ok(())),
            (b"foo bar", Err(Whitespace), Err(Whitespace)),
            (b"foo.\tbar", Err(Whitespace), Err(Whitespace)),
            (b"foo\r", Err(Whitespace), Err(Whitespace)),
            (b"\nfoo", Err(Whitespace), Err(Whitespace)),
            (b"a.\x0c", Err(Whitespace), Err(Whitespace)),
            (b" ", Err(Whitespace), Err(Whitespace)),
            (b"\t", Err(Whitespace), Err(Whitespace)),
            (b"Foo.\xff\x00", Ok(()), Ok(())),
        ];
        for (subject, sub, lit) in cases {
            let shown = String::from_utf8_lossy(subject);
            assert_eq!(validate_subscription(subject), *sub, "subscription {shown:?}");
            assert_eq!(validate_literal(subject), *lit, "literal {shown:?}");
        }
    }

    #[test]
    fn matching() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"foo", b"foo"),
            (b"foo.bar", b"foo.bar"),
            (b"foo.*", b"foo.bar"),
            (b"*.bar", b"foo.bar"),
            (b"*", b"foo"),
            (b">", b"foo"),
            (b">", b"foo.bar.baz"),
            (b"foo.>", b"foo.bar"),
            (b"foo.>", b"foo.bar.baz"),
            (b"foo.*.>", b"foo.bar.baz"),
            (b"foo*", b"foo*"),
            (b"foo.*", b"foo.*"),
            (b"foo.>", b"foo.>"),
        ];
        let no: &[(&[u8], &[u8])] = &[
            (b"foo", b"Foo"),
            (b"foo", b"foo.bar"),
            (b"foo.bar", b"foo"),
            (b"foo.*", b"foo"),
            (b"foo.*", b"foo.bar.baz"),
            (b"foo.>", b"foo"),
            (b"foo.*.>", b"foo.bar"),
            (b"foo*", b"foobar"),
            (b"foo.bar", b"foo.*"),
            (b"a.>.b", b"a.x.b"),
            (b">", b""),
            (b">", b"a..b"),
            (b"*", b"."),
            (b"", b""),
            (b"a.*", b"a."),
        ];
        for (p, s) in yes {
            assert!(matches(p, s), "{:?} should match {:?}", p, s);
        }
        for (p, s) in no {
            assert!(!matches(p, s), "{:?} should not match {:?}", p, s);
        }
    }

    #[test]
    fn subsets() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"foo.*", b"foo.>"),
            (b"foo.bar", b"foo.*"),
            (b"foo.bar", b"foo.bar"),
            (b"foo.>", b"foo.>"),
            (b"foo.>", b">"),
            (b"foo.*.>", b"foo.>"),
            (b"*", b"*"),
            (b"*", b">"),
        ];
        let no: &[(&[u8], &[u8])] = &[
            (b"foo.>", b"foo.*"),
            (b"foo.*", b"foo.bar"),
            (b"foo", b"foo.>"),
            (b">", b"*"),
            (b"foo.>", b"foo.*.>"),
            (b"foo.bar", b"foo"),
            (b"a..b", b">"),
            (b"a", b""),
        ];
        for (a, b) in yes {
            assert!(is_subset(a, b), "{:?} should be a subset of {:?}", a, b);
        }
        for (a, b) in no {
            assert!(!is_subset(a, b), "{:?} should not be a subset of {:?}", a, b);
        }
    }

    fn join(tokens: &[&[u8]]) -> Vec<u8> {
        tokens.join(&b'.')
    }

    /// Every literal subject of 1 to `max_len` tokens over `alphabet`.
    fn universe(alphabet: &[&'static [u8]], max_len: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut layer: Vec<Vec<&[u8]>> = vec![vec![]];
        for _ in 0..max_len {
            layer = layer
                .iter()
                .flat_map(|prefix| {
                    alphabet.iter().map(move |t| {
                        let mut next = prefix.clone();
                        next.push(*t);
                        next
                    })
                })
                .collect();
            out.extend(layer.iter().map(|t| join(t)));
        }
        out
    }

    /// Whether `sub` ⊂ `of`, judged on concrete subjects. Patterns use literals `a` and `b` and
    /// at most 3 tokens; subjects add `c` (stands for any other token) and a fourth token (longer
    /// than any pattern, so `>` is told apart from a run of `*`). Any counterexample maps onto
    /// one of these subjects, so the check is exact.
    fn brute_subset(sub: &[u8], of: &[u8], universe: &[Vec<u8>]) -> bool {
        universe.iter().all(|s| !matches(sub, s) || matches(of, s))
    }

    fn all_patterns() -> Vec<Vec<u8>> {
        let all = universe(&[b"a", b"b", b"*", b">"], 3);
        all.into_iter().filter(|p| validate_subscription(p).is_ok()).collect()
    }

    #[test]
    fn subset_agrees_with_brute_force_exhaustively() {
        let subjects = universe(&[b"a", b"b", b"c"], 4);
        let patterns = all_patterns();
        assert_eq!(patterns.len(), 4 + 3 * 4 + 9 * 4);
        for sub in &patterns {
            for of in &patterns {
                assert_eq!(
                    is_subset(sub, of),
                    brute_subset(sub, of, &subjects),
                    "{} in {}",
                    String::from_utf8_lossy(sub),
                    String::from_utf8_lossy(of)
                );
            }
        }
    }

    fn pattern_strategy() -> impl Strategy<Value = Vec<u8>> {
        let token = prop::sample::select(vec![&b"a"[..], b"b", b"*", b">"]);
        prop::collection::vec(token, 1..=3).prop_map(|mut tokens| {
            if let Some(i) = tokens.iter().position(|t| *t == b">") {
                tokens.truncate(i + 1);
            }
            join(&tokens)
        })
    }

    proptest! {
        #[test]
        fn subset_agrees_with_brute_force(sub in pattern_strategy(), of in pattern_strategy()) {
            let subjects = universe(&[b"a", b"b", b"c"], 4);
            prop_assert_eq!(is_subset(&sub, &of), brute_subset(&sub, &of, &subjects));
        }

        #[test]
        fn subset_is_consistent_with_matching(
            sub in pattern_strategy(),
            of in pattern_strategy(),
            subject in prop::collection::vec(prop::sample::select(vec![&b"a"[..], b"b", b"c"]), 1..=4),
        ) {
            let subject = join(&subject);
            if is_subset(&sub, &of) && matches(&sub, &subject) {
                prop_assert!(matches(&of, &subject));
            }
        }

        #[test]
        fn never_panics(a in prop::collection::vec(any::<u8>(), 0..12), b in prop::collection::vec(prop::sample::select(vec![b'.', b'*', b'>', b'a', b' ']), 0..12)) {
            let _ = validate_subscription(&a);
            let _ = validate_literal(&b);
            let _ = matches(&a, &b);
            let _ = matches(&b, &a);
            let _ = matches(&b, &b);
            let _ = is_subset(&a, &b);
            let _ = is_subset(&b, &b);
        }
    }
}
