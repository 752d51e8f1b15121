//! Why a stream broke its framing, in words an operator can act on. The commonest
//! mistake is the wrong framing on one side: `printf 'hello\n' | nc` against a `u32be`
//! port declares a frame of 1751477356 bytes (the bytes "hell"), and a client using
//! `struct.pack('i', n)` on x86 declares 67108864 for a 4-byte payload. [`diagnose`]
//! looks at the bytes the decoder rejected and names the likelier framing.
//!
//! Pure: bytes and a framing in, a [`Hint`] out; it knows no sockets and no logs.

use std::fmt;

use super::{Endian, Framing};

/// Bytes of the rejected input that [`diagnose`] looks at (and quotes): enough for a
/// header of any width and a recognisable start of a line.
pub const SAMPLE: usize = 16;

/// The HTTP methods whose request line gives away an HTTP client (a health checker,
/// a browser, a scanner) at a framed port.
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"PRI * HTTP/2",
];

/// What the rejected bytes suggest the client was speaking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// They read as text: the client sends lines.
    Text {
        /// The start of the bytes, escaped (`hello\n`).
        sample: String,
    },
    /// They are an HTTP request line.
    Http {
        /// The start of the request line, escaped.
        sample: String,
    },
    /// Another length header would declare a plausible length.
    Framing {
        /// The framing that reads them so.
        framing: Framing,
        /// The length it reads.
        len: u64,
    },
    /// Binary bytes at a `line` port, which no length header explains.
    Binary,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hint::Text { sample } => write!(
                f,
                "the bytes look like text (\"{sample}\"): if the client sends lines, run with --framing line"
            ),
            Hint::Http { sample } => write!(
                f,
                "the bytes look like an HTTP request (\"{sample}\"): this port speaks framed messages, not HTTP (the admin endpoint is --admin)"
            ),
            Hint::Framing { framing, len } => write!(
                f,
                "read as {framing} the header declares {len} bytes: if the client sends {framing} headers, run with --framing {framing}"
            ),
            Hint::Binary => f.write_str(
                "the bytes are binary, not text: if the client sends length-prefixed frames, run with its --framing (u32be, u32le, ...)",
            ),
        }
    }
}

/// The hint for `head`, the first bytes (up to [`SAMPLE`]) of a frame that `framing`
/// rejected with payloads of at most `max_frame` bytes; `None` when the bytes suggest
/// nothing better.
///
/// For a length header: text first (it is what `nc` and HTTP probes send), then the
/// same width in the other byte order, then the other widths (never `u8`, which reads
/// any byte as a plausible length). For `line`: bytes that are not text, read as a
/// length header if one fits.
///
/// ```
/// use framecast::codec::diagnose::{diagnose, Hint};
/// use framecast::Framing;
///
/// let u32be = Framing::default();
/// let hint = diagnose(u32be, b"hello\n", 8 << 20);
/// assert!(matches!(hint, Some(Hint::Text { .. })));
/// let hint = diagnose(u32be, &4u32.to_le_bytes(), 8 << 20);
/// assert_eq!(hint, Some(Hint::Framing { framing: "u32le".parse()?, len: 4 }));
/// # Ok::<(), framecast::codec::ParseFramingError>(())
/// ```
pub fn diagnose(framing: Framing, head: &[u8], max_frame: usize) -> Option<Hint> {
    let head = head.get(..SAMPLE).unwrap_or(head);
    if head.is_empty() {
        return None;
    }
    let text = looks_like_text(head);
    match framing {
        Framing::Length { .. } if text => {
            let sample = escape(head);
            if HTTP_METHODS.iter().any(|m| head.starts_with(m)) {
                Some(Hint::Http { sample })
            } else {
                Some(Hint::Text { sample })
            }
        }
        Framing::Length { width, endian } => {
            plausible_header(head, max_frame, candidates(width, endian))
        }
        Framing::Line if !text => {
            let every = [4, 2, 8]
                .into_iter()
                .flat_map(|w| [(w, Endian::Big), (w, Endian::Little)]);
            Some(plausible_header(head, max_frame, every).unwrap_or(Hint::Binary))
        }
        Framing::Line | Framing::Fixed(_) | Framing::Raw => None,
    }
}

/// The length framings to try after `width`/`endian` was rejected, likeliest first.
fn candidates(width: usize, endian: Endian) -> impl Iterator<Item = (usize, Endian)> {
    let other = match endian {
        Endian::Big => Endian::Little,
        Endian::Little => Endian::Big,
    };
    let same_width = [(width, other)];
    let others = [4, 2, 8]
        .into_iter()
        .filter(move |&w| w != width)
        .flat_map(move |w| [(w, endian), (w, other)]);
    same_width.into_iter().filter(|&(w, _)| w > 1).chain(others)
}

/// The first candidate header that declares a length from 1 to `max_frame`, in the
/// lower three quarters of what its width can say.
fn plausible_header(
    head: &[u8],
    max_frame: usize,
    candidates: impl Iterator<Item = (usize, Endian)>,
) -> Option<Hint> {
    for (width, endian) in candidates {
        let Some(bytes) = head.get(..width) else {
            continue;
        };
        let mut be = [0u8; 8];
        be[8 - width..].copy_from_slice(bytes);
        if endian == Endian::Little {
            be[8 - width..].reverse();
        }
        let len = u64::from_be_bytes(be);
        // A real length rarely reaches the top of its header's range, and a narrow
        // header reads almost any bytes as a length under a large maximum: a length
        // in the top quarter of the range is no evidence.
        let evidence = len < 1 << (8 * width - 2);
        if len >= 1 && len <= max_frame as u64 && evidence {
            return Some(Hint::Framing {
                framing: Framing::Length { width, endian },
                len,
            });
        }
    }
    None
}

/// True when `bytes` read as UTF-8 text (a character cut at the end allowed) with no
/// control characters but tab, CR and LF.
fn looks_like_text(bytes: &[u8]) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // A multi-byte character cut by the sample's end is still text.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n'))
}

/// `bytes` as printable ASCII with escapes (`hello\n`, `\xff`).
fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string().replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8 << 20;

    fn framing(name: &str) -> Framing {
        name.parse().unwrap()
    }

    #[test]
    fn a_line_at_a_length_port_is_text_and_suggests_line_framing() {
        // "hell" declares 1751477356 bytes under u32be.
        let hint = diagnose(framing("u32be"), b"hello\n", MAX).unwrap();
        assert_eq!(
            hint,
            Hint::Text {
                sample: "hello\\n".into()
            }
        );
        assert!(hint.to_string().contains("--framing line"), "{hint}");
        assert!(hint.to_string().contains("\"hello\\n\""), "{hint}");
    }

    #[test]
    fn utf8_text_and_a_character_cut_at_the_sample_end_are_text() {
        let text = "欢迎光临欢迎光临".as_bytes();
        assert!(matches!(
            diagnose(framing("u32be"), &text[..SAMPLE], MAX),
            Some(Hint::Text { .. })
        ));
    }

    #[test]
    fn an_http_request_is_named_as_such() {
        let hint = diagnose(framing("u32be"), b"GET /metrics HTTP/1.1\r\n", MAX).unwrap();
        assert!(matches!(hint, Hint::Http { .. }), "{hint:?}");
        assert!(hint.to_string().contains("HTTP request"), "{hint}");
    }

    #[test]
    fn a_little_endian_u32_header_at_a_u32be_port_names_u32le() {
        // struct.pack('i', 4) on x86: 67108864 under u32be.
        let hint = diagnose(framing("u32be"), b"\x04\x00\x00\x00abcd", MAX).unwrap();
        assert_eq!(
            hint,
            Hint::Framing {
                framing: framing("u32le"),
                len: 4
            }
        );
        assert!(hint.to_string().contains("--framing u32le"), "{hint}");
    }

    #[test]
    fn a_big_endian_header_at_a_u32le_port_names_u32be() {
        let hint = diagnose(framing("u32le"), b"\x00\x00\x01\x00", MAX);
        assert_eq!(
            hint,
            Some(Hint::Framing {
                framing: framing("u32be"),
                len: 256
            })
        );
    }

    #[test]
    fn the_same_width_in_the_other_order_comes_first_and_must_fit_the_max() {
        // A u64le header at a u64be port: u64le reads 5 (u32le would too, but the
        // same width comes first).
        let head = b"\x05\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(
            diagnose(framing("u64be"), head, 4),
            None,
            "none fits a max of 4"
        );
        let hint = diagnose(framing("u64be"), head, MAX);
        assert_eq!(
            hint,
            Some(Hint::Framing {
                framing: framing("u64le"),
                len: 5
            })
        );
    }

    #[test]
    fn another_width_is_named_when_the_same_width_in_either_order_does_not_fit() {
        // A u16be client (`struct.pack('!H', 5)`) at a u32be port with a small max.
        let hint = diagnose(framing("u32be"), b"\x00\x05hello", 1000);
        assert_eq!(
            hint,
            Some(Hint::Framing {
                framing: framing("u16be"),
                len: 5
            })
        );
    }

    #[test]
    fn bytes_no_header_explains_get_no_hint() {
        assert_eq!(diagnose(framing("u32be"), b"\xff\xff\xff\xff", MAX), None);
        assert_eq!(diagnose(framing("u32be"), b"", MAX), None);
        assert_eq!(diagnose(framing("raw"), b"hello", MAX), None);
    }

    #[test]
    fn binary_at_a_line_port_is_read_as_a_length_header() {
        let hint = diagnose(Framing::Line, b"\x00\x00\x00\x05hello", MAX);
        assert_eq!(
            hint,
            Some(Hint::Framing {
                framing: framing("u32be"),
                len: 5
            })
        );
        assert_eq!(
            diagnose(Framing::Line, b"\xff\xfe\xfd\xfc\xfb", MAX),
            Some(Hint::Binary)
        );
        assert_eq!(diagnose(Framing::Line, b"a very long line", MAX), None);
    }
}
