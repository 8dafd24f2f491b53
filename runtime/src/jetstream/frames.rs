//! Parses the MSG/HMSG frames that readers append to the JetStream client's outbound buffer.
//! Every drain holds whole frames (`Outbound::push_with` appends a frame under one lock), and
//! they were encoded by `fjord_core::proto::encode::msg`, so a malformed frame is a bug: the
//! iterator stops there rather than guess.

pub struct Frame<'a> {
    pub subject: &'a str,
    pub reply: Option<&'a str>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

pub struct Frames<'a> {
    buf: &'a [u8],
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Frames { buf }
    }

    fn parse(&mut self) -> Option<Frame<'a>> {
        let buf: &'a [u8] = self.buf;
        let eol = memchr_crlf(buf)?;
        let line = std::str::from_utf8(&buf[..eol]).ok()?;
        let mut parts = line.split(' ');
        let op = parts.next()?;
        let args: Vec<&'a str> = parts.collect();
        let body = &buf[eol + 2..];
        let (subject, reply, hlen, total) = match (op, args.as_slice()) {
            ("MSG", [s, _sid, n]) => (*s, None, 0, n.parse::<usize>().ok()?),
            ("MSG", [s, _sid, r, n]) => (*s, Some(*r), 0, n.parse::<usize>().ok()?),
            ("HMSG", [s, _sid, h, n]) => (*s, None, h.parse().ok()?, n.parse::<usize>().ok()?),
            ("HMSG", [s, _sid, r, h, n]) => {
                (*s, Some(*r), h.parse().ok()?, n.parse::<usize>().ok()?)
            }
            _ => return None,
        };
        if body.len() < total + 2 || hlen > total {
            return None;
        }
        self.buf = &body[total + 2..];
        Some(Frame {
            subject,
            reply,
            headers: (op == "HMSG").then(|| &body[..hlen]),
            payload: &body[hlen..total],
        })
    }
}

fn memchr_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;
    fn next(&mut self) -> Option<Frame<'a>> {
        if self.buf.is_empty() {
            return None;
        }
        let f = self.parse();
        if f.is_none() {
            self.buf = &[];
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_encode_writes() {
        let mut buf = Vec::new();
        fjord_core::proto::encode::msg(&mut buf, b"a.b", b"1", Some(b"r"), None, b"hi", true);
        fjord_core::proto::encode::msg(
            &mut buf,
            b"c",
            b"2",
            None,
            Some(b"NATS/1.0\r\n\r\n"),
            b"x\r\ny",
            true,
        );
        let frames: Vec<Frame> = Frames::new(&buf).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].subject, frames[0].reply, frames[0].payload),
            ("a.b", Some("r"), &b"hi"[..])
        );
        assert_eq!(frames[1].headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
        assert_eq!(frames[1].payload, b"x\r\ny");
    }
}
