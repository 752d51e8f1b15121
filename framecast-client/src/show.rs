//! How a received payload is shown on one line: text with control and invalid bytes
//! escaped, or a hex dump. Pure functions over bytes; no terminal, no socket.

use std::fmt::Write as _;

/// Appends `payload` as text: valid UTF-8 as it is, except that `\` and control
/// characters are escaped (`\\`, `\n`, `\r`, `\t`, `\0`, `\x1b`, `\u{85}`) and every byte
/// that is not part of valid UTF-8 is written as `\xNN`. The result never contains a
/// control character, so one frame stays one line and cannot drive the terminal.
///
/// ```
/// let mut line = String::new();
/// framecast_client::show::escape(b"caf\xc3\xa9 \xff\n", &mut line);
/// assert_eq!(line, r"café \xff\n");
/// ```
pub fn escape(payload: &[u8], out: &mut String) {
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() && c.is_ascii() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// Appends `payload` as lowercase hex bytes separated by spaces (`68 69 ff`).
///
/// ```
/// let mut line = String::new();
/// framecast_client::show::hex(b"hi\xff", &mut line);
/// assert_eq!(line, "68 69 ff");
/// ```
pub fn hex(payload: &[u8], out: &mut String) {
    for (i, byte) in payload.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(payload: &[u8]) -> String {
        let mut out = String::new();
        escape(payload, &mut out);
        out
    }

    #[test]
    fn keeps_valid_utf8_text() {
        assert_eq!(escaped("欢迎光临 hello".as_bytes()), "欢迎光临 hello");
    }

    #[test]
    fn escapes_control_characters_and_backslash() {
        assert_eq!(escaped(b"a\tb\r\n\0\x1b[2J\\"), r"a\tb\r\n\0\x1b[2J\\");
        assert_eq!(escaped("\u{85}".as_bytes()), r"\u{85}");
    }

    #[test]
    fn escapes_each_invalid_byte() {
        assert_eq!(escaped(b"\xff\xfeok\xe6\xac"), r"\xff\xfeok\xe6\xac");
    }

    #[test]
    fn escaped_text_is_one_line() {
        let all: Vec<u8> = (0..=255).collect();
        assert!(!escaped(&all).chars().any(char::is_control));
    }

    #[test]
    fn hex_dumps_bytes() {
        let mut out = String::new();
        hex(b"", &mut out);
        assert_eq!(out, "");
        hex(b"\x00\x0a\xff", &mut out);
        assert_eq!(out, "00 0a ff");
    }
}
