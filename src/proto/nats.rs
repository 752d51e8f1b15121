//! The NATS client protocol, sans-IO: [`Parser`] takes the bytes a server sends, in
//! any chunking, and hands out [`Event`]s (`INFO`, `MSG`, `PING`, `PONG`, `+OK`,
//! `-ERR`); the encoders ([`connect`], [`subscribe`], [`publish_head`], [`ping`],
//! [`pong`]) write what a client sends. It never touches a socket or a clock, and its
//! memory is bounded by its limits, never by what the server declares: a control
//! line longer than [`MAX_CONTROL_LINE`] or a payload over the parser's maximum is an
//! error before anything is buffered for it.
//!
//! ```text
//! server: INFO {"server_id":"...","max_payload":1048576,...}\r\n
//! client: CONNECT {"verbose":false,"echo":false,...}\r\n
//!         SUB framecast.* 1\r\n
//!         PING\r\n
//! server: PONG\r\n                       (the subscription is in place)
//! client: PUB framecast.6869 5\r\nhello\r\n
//! server: MSG framecast.6869 1 5\r\nhello\r\n
//! ```
//!
//! ```
//! use framecast::proto::nats::{Event, Parser};
//!
//! let mut parser = Parser::new(1 << 20);
//! parser.feed(b"PING\r\nMSG room.a 1 5\r\nhel");
//! assert_eq!(parser.next_event(), Ok(Some(Event::Ping)));
//! assert_eq!(parser.next_event(), Ok(None)); // the payload is not all here yet
//! parser.feed(b"lo\r\n");
//! let Ok(Some(Event::Msg { subject, payload, .. })) = parser.next_event() else {
//!     panic!("a message");
//! };
//! assert_eq!((&subject[..], &payload[..]), (&b"room.a"[..], &b"hello"[..]));
//! ```

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// The longest control line taken (an `INFO` from a large cluster lists its peers'
/// URLs; 64 KiB is far beyond any real one).
pub const MAX_CONTROL_LINE: usize = 64 << 10;
/// The server's `max_payload` when its `INFO` does not say (the server's default).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// What the server said in `INFO`, as far as a client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The largest payload the server takes in one `PUB`.
    pub max_payload: usize,
    /// The server's id, for the log.
    pub server_id: String,
}

/// One thing the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Its `INFO`: first on every connection, and again when the cluster changes.
    Info(Info),
    /// A message on a subscription.
    Msg {
        /// The subject it was published on.
        subject: Bytes,
        /// The subscription it matched.
        sid: u64,
        /// Where replies go, if the publisher asked.
        reply: Option<Bytes>,
        /// The payload.
        payload: Bytes,
    },
    /// A keep-alive: answer with [`pong`].
    Ping,
    /// The answer to our [`ping`]: everything sent before it has been processed.
    Pong,
    /// `+OK` (only with `verbose`).
    Ok,
    /// `-ERR 'text'`; most close the connection.
    Err(String),
}

/// What the server sent that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// No line end within [`MAX_CONTROL_LINE`] bytes.
    LineTooLong,
    /// A `MSG` declared a payload over the parser's maximum.
    PayloadTooLong {
        /// Declared.
        len: usize,
        /// Taken.
        max: usize,
    },
    /// A line that is not what its operation takes, or an unknown operation.
    Malformed(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => {
                write!(f, "a control line longer than {MAX_CONTROL_LINE} bytes")
            }
            ProtoError::PayloadTooLong { len, max } => {
                write!(f, "a message of {len} bytes (at most {max} taken)")
            }
            ProtoError::Malformed(line) => write!(f, "cannot read {line:?}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Where the parser is: between operations, or inside a `MSG`'s payload.
#[derive(Debug)]
enum State {
    /// Waiting for a control line.
    Line,
    /// A `MSG` line was read; its payload and CRLF (`len + 2` bytes) come next.
    Payload {
        subject: Bytes,
        sid: u64,
        reply: Option<Bytes>,
        len: usize,
    },
}

/// Cuts a server's byte stream into [`Event`]s.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    state: State,
    /// The largest `MSG` payload taken.
    max_payload: usize,
}

impl Parser {
    /// A parser for a fresh connection, taking payloads of at most `max_payload`
    /// bytes.
    pub fn new(max_payload: usize) -> Parser {
        Parser {
            buf: BytesMut::new(),
            state: State::Line,
            max_payload,
        }
    }

    /// Appends bytes from the server; [`Parser::next_event`] then takes what they
    /// complete.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, `Ok(None)` until more bytes arrive.
    ///
    /// # Errors
    /// What the server sent cannot be read ([`ProtoError`]); the connection is then
    /// of no further use.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtoError> {
        loop {
            match &self.state {
                State::Payload { len, .. } => {
                    let len = *len;
                    if self.buf.len() < len + 2 {
                        return Ok(None);
                    }
                    if &self.buf[len..len + 2] != b"\r\n" {
                        return Err(ProtoError::Malformed("a payload without CRLF".into()));
                    }
                    let payload = self.buf.split_to(len).freeze();
                    self.buf.advance(2);
                    let State::Payload {
                        subject,
                        sid,
                        reply,
                        ..
                    } = std::mem::replace(&mut self.state, State::Line)
                    else {
                        return Ok(None);
                    };
                    return Ok(Some(Event::Msg {
                        subject,
                        sid,
                        reply,
                        payload,
                    }));
                }
                State::Line => {
                    let Some(end) = memchr::memmem::find(&self.buf, b"\r\n") else {
                        if self.buf.len() > MAX_CONTROL_LINE {
                            return Err(ProtoError::LineTooLong);
                        }
                        return Ok(None);
                    };
                    if end > MAX_CONTROL_LINE {
                        return Err(ProtoError::LineTooLong);
                    }
                    let line = self.buf.split_to(end).freeze();
                    self.buf.advance(2);
                    if let Some(event) = self.line(line)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Reads one control line: an event, or `None` after a `MSG` line (its payload
    /// follows).
    fn line(&mut self, line: Bytes) -> Result<Option<Event>, ProtoError> {
        let malformed = || ProtoError::Malformed(String::from_utf8_lossy(&line).into_owned());
        let (op, rest) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
            Some(at) => (&line[..at], line.slice(at + 1..)),
            None => (&line[..], Bytes::new()),
        };
        let is = |name: &str| op.eq_ignore_ascii_case(name.as_bytes());
        if is("MSG") {
            let fields: Vec<Bytes> = rest
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|f| !f.is_empty())
                .map(|f| rest.slice_ref(f))
                .collect();
            let (subject, sid, reply, len) = match fields.as_slice() {
                [subject, sid, len] => (subject, sid, None, len),
                [subject, sid, reply, len] => (subject, sid, Some(reply.clone()), len),
                _ => return Err(malformed()),
            };
            let number = |b: &Bytes| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            };
            let (Some(sid), Some(len)) = (number(sid), number(len)) else {
                return Err(malformed());
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > self.max_payload {
                return Err(ProtoError::PayloadTooLong {
                    len,
                    max: self.max_payload,
                });
            }
            self.state = State::Payload {
                subject: subject.clone(),
                sid,
                reply,
                len,
            };
            return Ok(None);
        }
        let event = if is("PING") {
            Event::Ping
        } else if is("PONG") {
            Event::Pong
        } else if is("+OK") {
            Event::Ok
        } else if is("-ERR") {
            let text = String::from_utf8_lossy(&rest);
            Event::Err(text.trim().trim_matches('\'').to_owned())
        } else if is("INFO") {
            Event::Info(parse_info(&rest))
        } else {
            return Err(malformed());
        };
        Ok(Some(event))
    }
}

/// The fields of an `INFO` object a client needs, read without a JSON parser: the
/// server's object is flat where these keys are, and a missing key takes the
/// server's default.
fn parse_info(json: &[u8]) -> Info {
    let text = String::from_utf8_lossy(json);
    let value = |key: &str| -> Option<&str> {
        let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let max_payload = value("max_payload")
        .map(|v| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(DEFAULT_MAX_PAYLOAD);
    let server_id = value("server_id")
        .and_then(|v| v.strip_prefix('"'))
        .and_then(|v| v.split('"').next())
        .unwrap_or_default()
        .to_owned();
    Info {
        max_payload,
        server_id,
    }
}

/// `CONNECT` for a client named `name` that never receives its own messages back
/// (`echo: false`), without `+OK`s (`verbose: false`) and without headers.
pub fn connect(name: &str, out: &mut BytesMut) {
    let name: String = name
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    out.extend_from_slice(
        format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"lang\":\"rust\",\"version\":\"{}\",\"name\":\"{name}\",\"protocol\":1,\"headers\":false,\"no_responders\":false}}\r\n",
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    );
}

/// `SUB subject sid`.
pub fn subscribe(subject: &str, sid: u64, out: &mut BytesMut) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
}

/// The head of a `PUB` of `len` bytes on `subject`; the payload and
/// [`PAYLOAD_END`] follow it.
pub fn publish_head(subject: &[u8], len: usize, out: &mut BytesMut) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.extend_from_slice(format!(" {len}\r\n").as_bytes());
}

/// What ends a `PUB`'s payload.
pub const PAYLOAD_END: &[u8] = b"\r\n";

/// `PING`.
pub fn ping(out: &mut BytesMut) {
    out.extend_from_slice(b"PING\r\n");
}

/// `PONG`, the answer to the server's `PING`.
pub fn pong(out: &mut BytesMut) {
    out.extend_from_slice(b"PONG\r\n");
}

/// Whether `subject` is a subject a client may publish on: tokens of printable
/// ASCII without spaces or wildcards, separated by single dots.
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"INFO {\"server_id\":\"NABC\",\"version\":\"2.9.10\",\"max_payload\":4096,\"headers\":true}\r\n\
        +OK\r\nPING\r\nMSG room.61 1 5\r\nhello\r\nmsg room.62 7 _INBOX.x 0\r\n\r\n\
        PONG\r\n-ERR 'Slow Consumer'\r\n";

    fn expected() -> Vec<Event> {
        vec![
            Event::Info(Info {
                max_payload: 4096,
                server_id: "NABC".into(),
            }),
            Event::Ok,
            Event::Ping,
            Event::Msg {
                subject: Bytes::from_static(b"room.61"),
                sid: 1,
                reply: None,
                payload: Bytes::from_static(b"hello"),
            },
            Event::Msg {
                subject: Bytes::from_static(b"room.62"),
                sid: 7,
                reply: Some(Bytes::from_static(b"_INBOX.x")),
                payload: Bytes::new(),
            },
            Event::Pong,
            Event::Err("Slow Consumer".into()),
        ]
    }

    fn drain(parser: &mut Parser, out: &mut Vec<Event>) {
        while let Some(event) = parser.next_event().unwrap() {
            out.push(event);
        }
    }

    #[test]
    fn reads_every_operation_in_one_chunk() {
        let mut parser = Parser::new(1 << 20);
        parser.feed(STREAM);
        let mut events = Vec::new();
        drain(&mut parser, &mut events);
        assert_eq!(events, expected());
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn reads_the_same_split_at_every_byte_and_byte_at_a_time() {
        for at in 0..STREAM.len() {
            let mut parser = Parser::new(1 << 20);
            let mut events = Vec::new();
            parser.feed(&STREAM[..at]);
            drain(&mut parser, &mut events);
            parser.feed(&STREAM[at..]);
            drain(&mut parser, &mut events);
            assert_eq!(events, expected(), "split at {at}");
        }
        let mut parser = Parser::new(1 << 20);
        let mut events = Vec::new();
        for b in STREAM {
            parser.feed(std::slice::from_ref(b));
            drain(&mut parser, &mut events);
        }
        assert_eq!(events, expected());
    }

    #[test]
    fn rejects_a_declared_payload_over_the_maximum_before_buffering_it() {
        let mut parser = Parser::new(10);
        parser.feed(b"MSG a 1 11\r\n");
        assert_eq!(
            parser.next_event(),
            Err(ProtoError::PayloadTooLong { len: 11, max: 10 })
        );
    }

    #[test]
    fn rejects_a_control_line_without_end_past_the_bound() {
        let mut parser = Parser::new(10);
        parser.feed(&vec![b'I'; MAX_CONTROL_LINE + 1]);
        assert_eq!(parser.next_event(), Err(ProtoError::LineTooLong));
    }

    #[test]
    fn rejects_unknown_operations_and_bad_msg_lines() {
        for bad in [
            &b"HELLO\r\n"[..],
            b"MSG a 1\r\n",
            b"MSG a x 1\r\n",
            b"MSG a 1 2\r\nabcd",
        ] {
            let mut parser = Parser::new(10);
            parser.feed(bad);
            assert!(
                matches!(parser.next_event(), Err(ProtoError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn info_without_max_payload_takes_the_default() {
        let info = parse_info(b"{\"server_id\":\"X\"}");
        assert_eq!(info.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(info.server_id, "X");
    }

    #[test]
    fn encodes_what_a_client_sends() {
        let mut out = BytesMut::new();
        connect("framecast \"x\"", &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("CONNECT {\"verbose\":false"), "{text}");
        assert!(text.contains("\"echo\":false"));
        assert!(
            text.contains("\"name\":\"framecast x\""),
            "quotes dropped: {text}"
        );
        assert!(text.ends_with("}\r\n"));
        out.clear();
        subscribe("framecast.*", 1, &mut out);
        publish_head(b"framecast.61", 5, &mut out);
        ping(&mut out);
        pong(&mut out);
        assert_eq!(
            &out[..],
            b"SUB framecast.* 1\r\nPUB framecast.61 5\r\nPING\r\nPONG\r\n"
        );
    }

    #[test]
    fn subjects_are_dot_separated_tokens_without_wildcards() {
        for good in ["framecast", "a.b.c", "x-1_2"] {
            assert!(is_valid_subject(good), "{good}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\tb"] {
            assert!(!is_valid_subject(bad), "{bad:?}");
        }
    }
}
