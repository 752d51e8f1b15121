//! The file-download protocol shared by `file_server` and `file_client` (and their
//! tests): message kinds, limits, and the little JSON the list and the header are
//! written in. Sans-IO: payloads in, values out; the framing is the library's `u32be`.
//! The protocol is drawn at the top of `examples/file_server.rs`.

#![allow(dead_code)] // the server, the client and the tests each use a part

use std::fmt;

/// Most file bytes one `'D'` frame carries (1 MiB): large enough that the per-frame
/// cost vanishes, small enough that a reader's buffer stays small.
pub const MAX_DATA: usize = 1 << 20;
/// Largest frame payload the server sends (a long list), so the client's decoder can
/// reject a hostile length before allocating (4 MiB; about 40,000 files).
pub const MAX_FRAME: usize = 4 << 20;
/// Largest request the server reads (4 KiB): requests are 1 or 5 bytes; a longer
/// declared length breaks the framing and closes the connection.
pub const MAX_REQUEST: usize = 4 << 10;
/// Longest file name a client accepts, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// Request: list the files.
pub const LIST: u8 = b'L';
/// Request: get a file by index (a u32be follows).
pub const GET: u8 = b'G';
/// Reply: the file list as JSON (same letter as the request).
pub const LISTING: u8 = b'L';
/// Reply: a download's header as JSON.
pub const HEADER: u8 = b'H';
/// Reply: file bytes.
pub const DATA: u8 = b'D';
/// Reply: an error, as UTF-8 text.
pub const ERROR: u8 = b'E';

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `'L'`: the list.
    List,
    /// `'G'` + index: one file.
    Get(u32),
}

impl Request {
    /// The request as a frame payload.
    pub fn to_payload(self) -> Vec<u8> {
        match self {
            Request::List => vec![LIST],
            Request::Get(index) => {
                let mut p = vec![GET];
                p.extend_from_slice(&index.to_be_bytes());
                p
            }
        }
    }

    /// Reads a request payload.
    ///
    /// # Errors
    /// A description of what is wrong with it, fit for an `'E'` frame.
    pub fn parse(payload: &[u8]) -> Result<Request, String> {
        match payload {
            [LIST] => Ok(Request::List),
            [GET, a, b, c, d] => Ok(Request::Get(u32::from_be_bytes([*a, *b, *c, *d]))),
            [GET, ..] => Err(format!(
                "bad request: 'G' takes a 4-byte index, got {} bytes",
                payload.len() - 1
            )),
            [LIST, ..] => Err("bad request: 'L' takes nothing after it".into()),
            [] => Err("bad request: empty frame".into()),
            [kind, ..] => Err(format!(
                "bad request: unknown kind {:?} (expected 'L' or 'G')",
                char::from(*kind)
            )),
        }
    }
}

/// One offered file, as the list describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the list: what a `'G'` request names.
    pub index: u32,
    /// Its name inside the served folder (never a path).
    pub name: String,
    /// Its size in bytes when listed.
    pub size: u64,
}

/// A download's header: the name to save under and the exact byte count to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The file's name.
    pub name: String,
    /// Bytes the `'D'` frames will carry in all.
    pub size: u64,
}

/// A frame payload: `kind` then `body`.
pub fn payload(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + body.len());
    p.push(kind);
    p.extend_from_slice(body);
    p
}

/// The list as JSON: `[{"index":0,"name":"a","size":1},...]`.
pub fn list_json(entries: &[Entry]) -> String {
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"index\":{},\"name\":", e.index));
        push_json_string(&mut out, &e.name);
        out.push_str(&format!(",\"size\":{}}}", e.size));
    }
    out.push(']');
    out
}

/// The header as JSON: `{"name":"a","size":1}`.
pub fn header_json(header: &Header) -> String {
    let mut out = String::from("{\"name\":");
    push_json_string(&mut out, &header.name);
    out.push_str(&format!(",\"size\":{}}}", header.size));
    out
}

/// Reads a list.
///
/// # Errors
/// The text is not JSON, or not an array of objects with `index`, `name` and `size`.
pub fn parse_list(text: &str) -> Result<Vec<Entry>, JsonError> {
    let Json::Array(items) = Json::parse(text)? else {
        return Err(JsonError::Shape("the list is not an array"));
    };
    items
        .iter()
        .map(|item| {
            let index = item.field_u64("index")?;
            Ok(Entry {
                index: u32::try_from(index).map_err(|_| JsonError::Shape("index over u32"))?,
                name: item.field_str("name")?.to_owned(),
                size: item.field_u64("size")?,
            })
        })
        .collect()
}

/// Reads a header.
///
/// # Errors
/// The text is not JSON, or not an object with `name` and `size`.
pub fn parse_header(text: &str) -> Result<Header, JsonError> {
    let header = Json::parse(text)?;
    Ok(Header {
        name: header.field_str("name")?.to_owned(),
        size: header.field_u64("size")?,
    })
}

/// Appends `s` as a JSON string literal, escaping quotes, backslashes and controls.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON that could not be read, or that is not shaped as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or JSON this reader does not take): where, and what.
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// JSON, but not the value expected.
    Shape(&'static str),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { at, what } => write!(f, "bad JSON at byte {at}: {what}"),
            JsonError::Shape(what) => write!(f, "unexpected JSON: {what}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// A JSON value, as far as this protocol needs: numbers are unsigned integers.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer that fits a `u64`.
    Number(u64),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's members, in order.
    Object(Vec<(String, Json)>),
}

/// Nesting deeper than this is refused: the reader recurses, and the protocol nests
/// two levels.
const MAX_DEPTH: usize = 16;

impl Json {
    /// Parses one JSON value filling all of `text` (whitespace aside).
    ///
    /// # Errors
    /// [`JsonError::Syntax`]: malformed, nested over 16 deep, or a number that is
    /// negative, fractional or over `u64::MAX`.
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = p.value(0)?;
        p.skip_ws();
        if p.at != p.bytes.len() {
            return Err(p.error("trailing characters"));
        }
        Ok(value)
    }

    /// The member `key` of an object.
    fn field(&self, key: &'static str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn field_u64(&self, key: &'static str) -> Result<u64, JsonError> {
        match self.field(key) {
            Some(Json::Number(n)) => Ok(*n),
            _ => Err(JsonError::Shape(match key {
                "index" => "no numeric \"index\"",
                "size" => "no numeric \"size\"",
                _ => "a number is missing",
            })),
        }
    }

    fn field_str(&self, key: &'static str) -> Result<&str, JsonError> {
        match self.field(key) {
            Some(Json::String(s)) => Ok(s),
            _ => Err(JsonError::Shape("no string \"name\"")),
        }
    }
}

/// A recursive-descent reader over the text's bytes.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> JsonError {
        JsonError::Syntax { at: self.at, what }
    }

    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn literal(&mut self, word: &'static str, value: Json) -> Result<Json, JsonError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("unknown literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-') => Err(self.error("negative numbers are not expected")),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.at += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.at += 1; // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected ':'")?;
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error("only whole numbers are expected"));
        }
        let digits = &self.bytes[start..self.at];
        if digits.len() > 1 && digits[0] == b'0' {
            return Err(JsonError::Syntax {
                at: start,
                what: "leading zero",
            });
        }
        digits
            .iter()
            .try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .map(Json::Number)
            .ok_or(JsonError::Syntax {
                at: start,
                what: "number over u64",
            })
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1; // '"'
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control in one piece.
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            // The text is a `str` and the run stops only at ASCII bytes, so it is
            // whole characters.
            let run = std::str::from_utf8(&self.bytes[start..self.at])
                .map_err(|_| self.error("invalid UTF-8"))?;
            out.push_str(run);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// The character an escape (after its backslash) stands for.
    fn escape(&mut self) -> Result<char, JsonError> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated escape"));
        };
        self.at += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: `\uD83D\uDE00`.
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return Err(self.error("lone high surrogate"));
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.error("bad low surrogate"));
                    }
                    let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    char::from_u32(c).ok_or(self.error("bad surrogate pair"))?
                } else {
                    char::from_u32(high).ok_or(self.error("lone low surrogate"))?
                }
            }
            _ => return Err(self.error("unknown escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or(self.error("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u escape"))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips_through_json() {
        let entries = vec![
            Entry {
                index: 0,
                name: "a \"quoted\" back\\slash\n\u{1}film.mkv".into(),
                size: 0,
            },
            Entry {
                index: 1,
                name: "été 😀.mp4".into(),
                size: u64::MAX,
            },
        ];
        let text = list_json(&entries);
        assert!(text.is_ascii() || text.contains("été"), "{text}");
        assert_eq!(parse_list(&text).unwrap(), entries);
        assert_eq!(parse_list("[]").unwrap(), vec![]);
    }

    #[test]
    fn a_header_round_trips_through_json() {
        let header = Header {
            name: "x".into(),
            size: 104_857_600,
        };
        assert_eq!(parse_header(&header_json(&header)).unwrap(), header);
        assert_eq!(
            parse_header(" { \"size\" : 3 , \"name\" : \"\\u00e9\\ud83d\\ude00\" } ").unwrap(),
            Header {
                name: "é😀".into(),
                size: 3
            }
        );
    }

    #[test]
    fn json_that_is_malformed_or_hostile_is_refused() {
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\" 1}",
            "\"abc",
            "\"\\x\"",
            "\"\\ud800\"",
            "-1",
            "1.5",
            "01",
            "18446744073709551616",
            "[] []",
            "\"a\u{1}b\"",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = "[".repeat(100_000);
        assert!(Json::parse(&deep).is_err(), "deep nesting was accepted");
        assert_eq!(
            Json::parse("18446744073709551615").unwrap(),
            Json::Number(u64::MAX)
        );
    }

    #[test]
    fn json_of_the_wrong_shape_is_refused() {
        assert!(parse_list("{}").is_err());
        assert!(parse_list("[{\"index\":0,\"name\":\"a\"}]").is_err());
        assert!(parse_list("[{\"index\":4294967296,\"name\":\"a\",\"size\":1}]").is_err());
        assert!(parse_header("{\"name\":1,\"size\":1}").is_err());
    }

    #[test]
    fn requests_parse_or_say_what_is_wrong() {
        for request in [Request::List, Request::Get(0), Request::Get(u32::MAX)] {
            assert_eq!(Request::parse(&request.to_payload()), Ok(request));
        }
        for bad in [
            &b""[..],
            b"G",
            b"G\0\0\0",
            b"G\0\0\0\0\0",
            b"LL",
            b"x",
            b"GET 12",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
