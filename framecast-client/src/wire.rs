//! A file as one frame, streamed: the wire bytes (header, the file's bytes, delimiter)
//! produced piece by piece from the file, never the whole file in memory. The sender
//! writes them; [`EchoCheck`] reads the same bytes again from a second handle and
//! compares an echo against them as it arrives.
//!
//! The library's [`Encoder`] takes a whole payload, so the small parts around the
//! payload are built here; a unit test holds them to what the codec encodes.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use framecast::codec::{Codec, Encoder, Endian, Framing};

use crate::failure::Failure;

/// The wire bytes of one frame carrying a file, read in order.
#[derive(Debug)]
pub struct Wire {
    /// Bytes before the payload (a length header), with the read position in them.
    header: Vec<u8>,
    /// The file's bytes still to read.
    file: io::Take<BufReader<File>>,
    /// Bytes after the payload (a line delimiter).
    trailer: Vec<u8>,
    /// How much of `header` then `trailer` has been read (index into both, in turn).
    at: usize,
    /// The file's length when opened: what `file` must still yield in total.
    file_len: u64,
    /// The path, for messages.
    path: PathBuf,
}

impl Wire {
    /// Opens `path` as a frame of `framing`, checking first that the file can be one
    /// (its size fits the header or the fixed size; no `\n` in a line).
    ///
    /// # Errors
    /// [`Failure::Local`] naming the file and what is wrong.
    pub fn open(path: &Path, framing: Framing) -> Result<Wire, Failure> {
        let shown = path.display();
        let fail = |error: io::Error| {
            Failure::Local(format!("{shown}: {}", crate::failure::describe(&error)))
        };
        let file = File::open(path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(Failure::Local(format!("{shown}: not a regular file")));
        }
        let len = meta.len();
        let (header, trailer) = match framing {
            Framing::Length { width, endian } => (
                length_header(width, endian, len).ok_or_else(|| {
                    Failure::Local(format!(
                        "{shown}: {len} bytes is too long for one {framing} frame"
                    ))
                })?,
                Vec::new(),
            ),
            Framing::Line => {
                let last = scan_for_newline(path).map_err(fail)?;
                match last {
                    Scan::Newline(at) => {
                        return Err(Failure::Local(format!(
                            "{shown}: a newline at byte {at}; --framing line cannot carry it in one frame"
                        )))
                    }
                    Scan::EndsWithCr => (Vec::new(), b"\r\n".to_vec()),
                    Scan::Clean => (Vec::new(), b"\n".to_vec()),
                }
            }
            Framing::Fixed(size) if len != size as u64 => {
                return Err(Failure::Local(format!(
                    "{shown}: {len} bytes, but --framing {framing} frames are {size} bytes"
                )))
            }
            Framing::Fixed(_) | Framing::Raw => (Vec::new(), Vec::new()),
        };
        Ok(Wire {
            header,
            file: BufReader::with_capacity(64 << 10, file).take(len),
            trailer,
            at: 0,
            file_len: len,
            path: path.to_owned(),
        })
    }

    /// The file's length in bytes (the frame's payload).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The whole frame's length on the wire.
    pub fn wire_len(&self) -> u64 {
        self.header.len() as u64 + self.file_len + self.trailer.len() as u64
    }

    /// Reads the next wire bytes into `buf`; 0 at the end of the frame.
    ///
    /// # Errors
    /// Reading the file failed, or it ended before the length it had when opened.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(rest) = self.header.get(self.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            return Ok(n);
        }
        if self.file.limit() > 0 {
            let n = self.file.read(buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while being sent", self.path.display()),
                ));
            }
            return Ok(n);
        }
        let at = self.at - self.header.len();
        let rest = self.trailer.get(at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

/// The header of a length-prefixed frame of `len` payload bytes, or `None` when the
/// header cannot express it.
fn length_header(width: usize, endian: Endian, len: u64) -> Option<Vec<u8>> {
    let bytes = match endian {
        Endian::Big => len.to_be_bytes(),
        Endian::Little => len.to_le_bytes(),
    };
    let width = width.clamp(1, 8);
    if width < 8 && len >> (8 * width) != 0 {
        return None;
    }
    Some(match endian {
        Endian::Big => bytes[8 - width..].to_vec(),
        Endian::Little => bytes[..width].to_vec(),
    })
}

/// What a line-framed file holds that matters for its delimiter.
enum Scan {
    /// A `\n` at this offset: the file cannot be one line.
    Newline(u64),
    /// It ends in `\r`, so the delimiter is `\r\n` (as [`LineCodec`] encodes it).
    ///
    /// [`LineCodec`]: framecast::codec::LineCodec
    EndsWithCr,
    /// Neither.
    Clean,
}

/// Reads the file once, in chunks, for `\n` and its last byte.
fn scan_for_newline(path: &Path) -> io::Result<Scan> {
    let mut file = File::open(path)?;
    let mut buf = vec![0; 64 << 10];
    let (mut offset, mut last) = (0u64, None);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            return Ok(Scan::Newline(offset + i as u64));
        }
        last = chunk.last().copied();
        offset += n as u64;
    }
    Ok(if last == Some(b'\r') {
        Scan::EndsWithCr
    } else {
        Scan::Clean
    })
}

/// Compares an echo, chunk by chunk, against the wire bytes of the frame sent.
#[derive(Debug)]
pub struct EchoCheck {
    /// The same frame, read again from the file.
    expected: Wire,
    /// Wire bytes compared so far.
    matched: u64,
    /// Scratch for the expected bytes of one chunk.
    scratch: Vec<u8>,
}

impl EchoCheck {
    /// Checks echoes of the frame `path` makes under `framing`.
    ///
    /// # Errors
    /// As [`Wire::open`].
    pub fn open(path: &Path, framing: Framing) -> Result<EchoCheck, Failure> {
        Ok(EchoCheck {
            expected: Wire::open(path, framing)?,
            matched: 0,
            scratch: Vec::new(),
        })
    }

    /// The payload length an echo must declare.
    pub fn file_len(&self) -> u64 {
        self.expected.file_len()
    }

    /// The echo's length on the wire.
    pub fn wire_len(&self) -> u64 {
        self.expected.wire_len()
    }

    /// Wire bytes compared and found equal so far.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// True once the whole frame came back equal.
    pub fn is_complete(&self) -> bool {
        self.matched == self.wire_len()
    }

    /// Compares the next bytes of the echo; returns how many of `chunk` belong to it
    /// (the rest come after the echo).
    ///
    /// # Errors
    /// [`Failure::Mismatch`] at the first byte that differs; [`Failure::Local`] when the
    /// file cannot be read again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<usize, Failure> {
        let want = (self.wire_len() - self.matched).min(chunk.len() as u64) as usize;
        let mut done = 0;
        while done < want {
            self.scratch.resize(want - done, 0);
            let n = self
                .expected
                .read(&mut self.scratch)
                .map_err(|e| Failure::Local(format!("reading the file again: {e}")))?;
            if n == 0 {
                break;
            }
            let got = &chunk[done..done + n];
            if let Some(i) = got.iter().zip(&self.scratch[..n]).position(|(a, b)| a != b) {
                let at = self.matched + i as u64;
                return Err(Failure::Mismatch(format!(
                    "echo mismatch at wire byte {at} of {}: sent {:#04x}, received {:#04x}",
                    self.wire_len(),
                    self.scratch[i],
                    got[i]
                )));
            }
            self.matched += n as u64;
            done += n;
        }
        Ok(done)
    }
}

/// Encodes `payload` with `codec`, for a typed line or `--send`.
///
/// # Errors
/// The codec's [`framecast::FrameError`], as text.
pub fn encode(codec: &Codec, payload: &[u8], out: &mut BytesMut) -> Result<(), String> {
    codec.encode(payload, out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("framecast-client-wire-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn wire_bytes(path: &Path, framing: Framing) -> Vec<u8> {
        let mut wire = Wire::open(path, framing).unwrap();
        let (mut all, mut buf) = (Vec::new(), [0; 3]);
        loop {
            match wire.read(&mut buf).unwrap() {
                0 => return all,
                n => all.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn streams_the_same_bytes_the_codec_encodes() {
        let payloads: [&[u8]; 3] = [b"hello, file", b"ends in cr\r", b""];
        for (i, payload) in payloads.iter().enumerate() {
            let path = temp_file(&format!("same{i}"), payload);
            for name in [
                "u8", "u16be", "u16le", "u32be", "u32le", "u64be", "u64le", "line", "raw",
            ] {
                let framing: Framing = name.parse().unwrap();
                let mut expected = BytesMut::new();
                Codec::new(framing, 1 << 20)
                    .encode(payload, &mut expected)
                    .unwrap();
                assert_eq!(
                    wire_bytes(&path, framing),
                    &expected[..],
                    "{name} {payload:?}"
                );
                assert_eq!(
                    Wire::open(&path, framing).unwrap().wire_len(),
                    expected.len() as u64
                );
            }
        }
    }

    #[test]
    fn refuses_files_that_cannot_be_one_frame() {
        let path = temp_file("bad", &[b'x'; 300]);
        assert!(Wire::open(&path, "u8".parse().unwrap()).is_err());
        assert!(Wire::open(&path, "fixed:299".parse().unwrap()).is_err());
        assert!(Wire::open(&path, "fixed:300".parse().unwrap()).is_ok());
        let lines = temp_file("lines", b"one\ntwo");
        let error = Wire::open(&lines, Framing::Line).unwrap_err().to_string();
        assert!(error.contains("newline at byte 3"), "{error}");
    }

    #[test]
    fn echo_check_accepts_the_frame_in_any_chunks_and_reports_the_first_difference() {
        let path = temp_file("echo", b"0123456789");
        let framing = Framing::default();
        let sent = wire_bytes(&path, framing);
        for size in [1, 3, sent.len()] {
            let mut check = EchoCheck::open(&path, framing).unwrap();
            for chunk in sent.chunks(size) {
                assert_eq!(check.feed(chunk).unwrap(), chunk.len());
            }
            assert!(check.is_complete());
            assert_eq!(check.feed(b"after").unwrap(), 0);
        }
        let mut flipped = sent.clone();
        flipped[7] ^= 1;
        let mut check = EchoCheck::open(&path, framing).unwrap();
        let error = check.feed(&flipped).unwrap_err();
        assert!(error.to_string().contains("wire byte 7"), "{error}");
    }
}
