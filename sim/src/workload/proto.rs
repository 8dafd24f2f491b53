//! The client's side of the protocol, written independently of core's parser and encoder so
//! the simulator checks the server against a second reading of the protocol: what a client
//! sends (CONNECT, SUB, UNSUB, PUB, HPUB, PING, PONG) and a parser for what the server sends.

/// One op from the server, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOp {
    Info,
    Msg {
        subject: Vec<u8>,
        sid: Vec<u8>,
        reply: Option<Vec<u8>>,
        /// `Some` for HMSG: the header block.
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
}

/// Parses one op at the front of `buf`: `Ok(None)` if incomplete, else the op and its length.
pub fn parse(buf: &[u8]) -> Result<Option<(ServerOp, usize)>, String> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > 64 * 1024 {
            return Err("control line too long".into());
        }
        return Ok(None);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let line = &buf[..line_end];
    let after = nl + 1;
    let (op, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let upper = op.to_ascii_uppercase();
    let simple = |o: ServerOp| Ok(Some((o, after)));
    match upper.as_slice() {
        b"INFO" => simple(ServerOp::Info),
        b"PING" => simple(ServerOp::Ping),
        b"PONG" => simple(ServerOp::Pong),
        b"+OK" => simple(ServerOp::Ok),
        b"-ERR" => simple(ServerOp::Err(String::from_utf8_lossy(args).into_owned())),
        b"MSG" | b"HMSG" => {
            let parts: Vec<&[u8]> = args.split(|&b| b == b' ').filter(|p| !p.is_empty()).collect();
            let hmsg = upper == b"HMSG";
            let sizes = if hmsg { 2 } else { 1 };
            if parts.len() != 2 + sizes && parts.len() != 3 + sizes {
                return Err(format!(
                    "bad {} line: {:?}",
                    if hmsg { "HMSG" } else { "MSG" },
                    show(line)
                ));
            }
            let num = |p: &[u8]| -> Result<usize, String> {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad size in {:?}", show(line)))
            };
            let reply = (parts.len() == 3 + sizes).then(|| parts[2].to_vec());
            let total = num(parts[parts.len() - 1])?;
            let hdr = if hmsg { num(parts[parts.len() - 2])? } else { 0 };
            if hdr > total {
                return Err(format!("header size over total in {:?}", show(line)));
            }
            if buf.len() < after + total + 2 {
                return Ok(None);
            }
            if &buf[after + total..after + total + 2] != b"\r\n" {
                return Err(format!("payload not followed by CRLF after {:?}", show(line)));
            }
            let body = &buf[after..after + total];
            let op = ServerOp::Msg {
                subject: parts[0].to_vec(),
                sid: parts[1].to_vec(),
                reply,
                headers: hmsg.then(|| body[..hdr].to_vec()),
                payload: body[hdr..].to_vec(),
            };
            Ok(Some((op, after + total + 2)))
        }
        _ => Err(format!("unknown op from server: {:?}", show(line))),
    }
}

/// Bytes for people: printable ASCII as is, the rest escaped, long runs cut.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(120) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 120 {
        s.push_str(&format!("...(+{})", bytes.len() - 120));
    }
    s
}

pub fn connect(out: &mut Vec<u8>, verbose: bool, echo: bool, headers: bool, no_responders: bool) {
    out.extend_from_slice(
        format!(
            "CONNECT {{\"verbose\":{verbose},\"pedantic\":false,\"echo\":{echo},\"headers\":{headers},\"no_responders\":{no_responders},\"protocol\":1,\"lang\":\"sim\",\"version\":\"0\"}}\r\n"
        )
        .as_bytes(),
    );
}

pub fn sub(out: &mut Vec<u8>, subject: &str, queue: Option<&str>, sid: u64) {
    match queue {
        Some(q) => out.extend_from_slice(format!("SUB {subject} {q} {sid}\r\n").as_bytes()),
        None => out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes()),
    }
}

pub fn unsub(out: &mut Vec<u8>, sid: u64, max: Option<u64>) {
    match max {
        Some(m) => out.extend_from_slice(format!("UNSUB {sid} {m}\r\n").as_bytes()),
        None => out.extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes()),
    }
}

pub fn publish(
    out: &mut Vec<u8>,
    subject: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
    match headers {
        Some(h) => {
            let line = format!("HPUB {subject}{reply} {} {}\r\n", h.len(), h.len() + payload.len());
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(h);
        }
        None => {
            out.extend_from_slice(format!("PUB {subject}{reply} {}\r\n", payload.len()).as_bytes())
        }
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_ops_split_anywhere() {
        let stream = b"INFO {\"a\":1} \r\n+OK\r\nMSG a.b 1 r 2\r\nhi\r\nHMSG c 2 12 14\r\nNATS/1.0\r\n\r\nyo\r\nPING\r\nPONG\r\n-ERR 'x'\r\n";
        let mut ops = Vec::new();
        let mut pos = 0;
        while let Some((op, used)) = parse(&stream[pos..]).unwrap() {
            ops.push(op);
            pos += used;
        }
        assert_eq!(pos, stream.len());
        assert_eq!(ops.len(), 7);
        assert_eq!(
            ops[2],
            ServerOp::Msg {
                subject: b"a.b".to_vec(),
                sid: b"1".to_vec(),
                reply: Some(b"r".to_vec()),
                headers: None,
                payload: b"hi".to_vec()
            }
        );
        for cut in 0..stream.len() {
            let r = parse(&stream[..cut]);
            assert!(r.is_ok());
        }
    }
}
