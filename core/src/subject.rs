//! Subjects: tokens separated by `.`, with the `*` and `>` wildcards.
//!
//! (Being written: see the subject/sublist brief.)

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

/// A subject a client may subscribe to: wildcards allowed as whole tokens, `>` only last.
pub fn validate_subscription(subject: &[u8]) -> Result<(), SubjectError> {
    let _ = subject;
    todo!()
}

/// A subject a client may publish to: valid and without wildcard tokens.
pub fn validate_literal(subject: &[u8]) -> Result<(), SubjectError> {
    let _ = subject;
    todo!()
}

/// Does the literal `subject` match the (possibly wildcard) `pattern`?
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let _ = (pattern, subject);
    todo!()
}
