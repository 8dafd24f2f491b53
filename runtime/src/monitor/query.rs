//! The query string of a monitoring request, decoded (`test=foo.%3E` is `foo.>`), with the
//! parameter parsers nats-server's handlers share.

use std::collections::HashMap;

/// Why a request's parameters were refused: sent back as HTTP 400 with this text.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // The first value wins, like Go's `url.Values.Get`.
            params.entry(decode(key)).or_insert_with(|| decode(value));
        }
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Go's `strconv.ParseBool` semantics for flags such as `subs=1` or `auth=true`; nats-server
    /// treats an unparsable value as an error.
    pub fn flag(&self, key: &str) -> Result<bool, BadRequest> {
        match self.get(key) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(BadRequest(format!(
                "Error decoding boolean for '{key}': strconv.ParseBool: parsing \"{other}\": \
                 invalid syntax"
            ))),
        }
    }

    /// An integer parameter; absent or empty gives `default`.
    pub fn int(&self, key: &str, default: i64) -> Result<i64, BadRequest> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                BadRequest(format!(
                    "Error decoding int for '{key}': strconv.Atoi: parsing \"{text}\": invalid syntax"
                ))
            }),
        }
    }
}

/// Percent-decoding, with `+` as a space (form encoding, as Go's `url.ParseQuery` does).
/// Malformed escapes are kept as written rather than refused.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_keeps_first_value() {
        let q = Query::parse(Some("test=foo.%3E&subs=1&subs=0&x=a+b&bad=%zz&end=%4"));
        assert_eq!(q.get("test"), Some("foo.>"));
        assert_eq!(q.flag("subs"), Ok(true));
        assert_eq!(q.get("x"), Some("a b"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("end"), Some("%4"));
        assert!(q.flag("x").is_err());
        assert_eq!(q.int("limit", 1024), Ok(1024));
        assert!(Query::parse(Some("limit=x")).int("limit", 0).is_err());
    }
}
