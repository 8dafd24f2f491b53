//! Subject transforms (`{src, dest}`), as streams (`subject_transform`) and sources and mirrors
//! (`subject_transforms`) use them: a message whose subject matches `src` is stored under the
//! subject `dest` makes of it.
//!
//! `dest` is a subject whose tokens are literals, wildcard references (`$N` or
//! `{{wildcard(N)}}`, the N-th `*` of `src`, counted from 1) or a final `>` (the rest of the
//! subject, allowed exactly when `src` ends in `>`). nats-server's other mapping functions
//! (partition, split, slice, left, right, random) are refused with an error saying so: a config
//! fjord cannot honour is better refused than silently applied differently.

use super::api::SubjectTransformConfig;
use super::errors::ApiError;

/// One destination token.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The token the N-th (0-based here) `*` of the source matched.
    Wildcard(usize),
    /// Everything the source's `>` matched.
    Rest,
}

/// A validated transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    /// The source filter (`>` when the config left it empty).
    src: String,
    dest: Vec<Part>,
}

/// Why a transform is refused: the source is no subject, or the destination is no mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransformError {
    BadSource(String),
    BadDestination(String),
}

const BAD_MAPPING: &str = "invalid mapping destination";

impl Transform {
    /// The transform `src → dest`; `None` for an empty `dest`, which transforms nothing.
    pub fn new(src: &str, dest: &str) -> Result<Option<Transform>, TransformError> {
        if dest.is_empty() {
            return Ok(None);
        }
        let src = if src.is_empty() { ">" } else { src };
        if crate::subject::validate_subscription(src.as_bytes()).is_err() {
            return Err(TransformError::BadSource(format!("invalid subject {src}")));
        }
        if crate::subject::validate_subscription(dest.as_bytes()).is_err() {
            return Err(TransformError::BadDestination(format!(
                "{BAD_MAPPING}: invalid transform"
            )));
        }
        let src_tokens: Vec<&str> = src.split('.').collect();
        let stars = src_tokens.iter().filter(|t| **t == "*").count();
        let src_rest = src_tokens.last() == Some(&">");
        let dest_tokens: Vec<&str> = dest.split('.').collect();
        let dest_rest = dest_tokens.last() == Some(&">");
        if dest_tokens.contains(&"*") || src_rest != dest_rest {
            return Err(TransformError::BadDestination(format!(
                "{BAD_MAPPING}: invalid transform"
            )));
        }
        let mut parts = Vec::with_capacity(dest_tokens.len());
        for token in dest_tokens {
            let part = match token {
                ">" => Part::Rest,
                t => match wildcard_reference(t)? {
                    Some(n) if n == 0 || n > stars => {
                        return Err(TransformError::BadDestination(format!(
                            "{BAD_MAPPING}: wildcard index out of range in {t}: [{n}]"
                        )))
                    }
                    Some(n) => Part::Wildcard(n - 1),
                    None => Part::Literal(t.to_string()),
                },
            };
            parts.push(part);
        }
        Ok(Some(Transform { src: src.to_string(), dest: parts }))
    }

    /// From a config entry.
    pub fn from_config(c: &SubjectTransformConfig) -> Result<Option<Transform>, TransformError> {
        Transform::new(&c.src, &c.dest)
    }

    /// The source filter.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// `subject` transformed, or `None` when it does not match the source.
    pub fn apply(&self, subject: &str) -> Option<String> {
        if !crate::subject::matches(self.src.as_bytes(), subject.as_bytes()) {
            return None;
        }
        let src: Vec<&str> = self.src.split('.').collect();
        let tokens: Vec<&str> = subject.split('.').collect();
        let stars: Vec<&str> =
            src.iter().zip(&tokens).filter(|(s, _)| **s == "*").map(|(_, t)| *t).collect();
        // `>` is the last source token: it matched everything from its position on.
        let rest = tokens.get(src.len().saturating_sub(1)..).unwrap_or_default().join(".");
        let out: Vec<String> = self
            .dest
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.clone(),
                Part::Wildcard(i) => stars.get(*i).map_or_else(String::new, |s| s.to_string()),
                Part::Rest => rest.clone(),
            })
            .collect();
        Some(out.join("."))
    }
}

/// `$N` or `{{wildcard(N)}}` (any case, spaces allowed) → `Some(N)`; other `{{...}}` functions
/// are refused; anything else is a literal.
fn wildcard_reference(token: &str) -> Result<Option<usize>, TransformError> {
    if let Some(n) = token.strip_prefix('$') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return n.parse().map(Some).map_err(|_| out_of_range(token));
        }
        return Ok(None);
    }
    let Some(inner) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
        return Ok(None);
    };
    let inner = inner.trim();
    let Some(open) = inner.find('(') else { return Err(unknown_function(token)) };
    let (name, args) = inner.split_at(open);
    let Some(args) = args.strip_prefix('(').and_then(|a| a.strip_suffix(')')) else {
        return Err(unknown_function(token));
    };
    if !name.trim().eq_ignore_ascii_case("wildcard") {
        return Err(unknown_function(token));
    }
    args.trim().parse().map(Some).map_err(|_| {
        TransformError::BadDestination(format!(
            "{BAD_MAPPING}: function argument is invalid or in the wrong format in {token}"
        ))
    })
}

fn out_of_range(token: &str) -> TransformError {
    TransformError::BadDestination(format!("{BAD_MAPPING}: wildcard index out of range in {token}"))
}

fn unknown_function(token: &str) -> TransformError {
    TransformError::BadDestination(format!(
        "{BAD_MAPPING}: mapping function not supported (only $N and {{{{wildcard(N)}}}}) in {token}"
    ))
}

/// The first transform of `transforms` that matches `subject` decides its new subject; none
/// matching leaves it as it is (nats-server's order).
pub fn apply_first(transforms: &[Transform], subject: &str) -> String {
    transforms.iter().find_map(|t| t.apply(subject)).unwrap_or_else(|| subject.to_string())
}

/// `checkStreamCfg`'s check of a stream-level `subject_transform`.
pub fn check_stream_transform(t: &SubjectTransformConfig) -> Result<(), ApiError> {
    match Transform::from_config(t) {
        Ok(_) => Ok(()),
        Err(TransformError::BadSource(e)) => Err(ApiError::stream_transform_invalid_source(e)),
        Err(TransformError::BadDestination(e)) => {
            Err(ApiError::stream_transform_invalid_destination(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str, dest: &str) -> Transform {
        Transform::new(src, dest).unwrap().unwrap()
    }

    #[test]
    fn wildcards_literals_and_rest() {
        assert_eq!(t("o.*", "t.$1").apply("o.a").as_deref(), Some("t.a"));
        assert_eq!(
            t("o.*.*", "x.{{wildcard(2)}}.{{Wildcard(1)}}").apply("o.a.b"),
            Some("x.b.a".into())
        );
        assert_eq!(t("o.>", "n.>").apply("o.a.b.c").as_deref(), Some("n.a.b.c"));
        assert_eq!(t("o.*.>", "n.$1.>").apply("o.a.b.c").as_deref(), Some("n.a.b.c"));
        assert_eq!(t("", "all.>").apply("x.y").as_deref(), Some("all.x.y"));
        assert_eq!(t("o.a", "p.b").apply("o.a").as_deref(), Some("p.b"));
        assert_eq!(t("o.*", "t.$1").apply("p.a"), None, "no match, no transform");
        assert_eq!(Transform::new("o.*", "").unwrap(), None, "an empty destination is none");
    }

    #[test]
    fn first_matching_transform_wins() {
        let ts = [t("a.*", "x.$1"), t("a.>", "y.>")];
        assert_eq!(apply_first(&ts, "a.b"), "x.b");
        assert_eq!(apply_first(&ts, "a.b.c"), "y.b.c");
        assert_eq!(apply_first(&ts, "z"), "z");
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(matches!(Transform::new("o..a", "x"), Err(TransformError::BadSource(_))));
        for (src, dest) in [
            ("o.*", "t.$2"),
            ("o.*", "t.$0"),
            ("o.a", "t.$1"),
            ("o.>", "t.x"),
            ("o.*", "t.>"),
            ("o.*", "t.*"),
            ("o.*", "t.{{partition(3,1)}}"),
            ("o.*", "t.{{wildcard(x)}}"),
        ] {
            assert!(
                matches!(Transform::new(src, dest), Err(TransformError::BadDestination(_))),
                "{src} -> {dest}"
            );
        }
        let bad = SubjectTransformConfig { src: "o.*".into(), dest: "t.$3".into() };
        assert_eq!(check_stream_transform(&bad).unwrap_err().err_code, 10156);
        let bad = SubjectTransformConfig { src: "o.*.".into(), dest: "t".into() };
        assert_eq!(check_stream_transform(&bad).unwrap_err().err_code, 10155);
    }
}
