//! The client for `file_server` (the protocol is drawn at the top of
//! `examples/file_server.rs`): lists the files, or downloads one by number with a
//! progress bar. Plain blocking `std::net`, framed with the library's codec.
//!
//! ```text
//! cargo run --release --example file_client -- ADDR --list
//! cargo run --release --example file_client -- ADDR --get N [--out DIR]
//! cargo run --release --example file_client -- ADDR [--out DIR]   (list, then ask)
//! ```
//!
//! A download is written to `DIR/.NAME.part` and renamed to `DIR/NAME` once exactly
//! the announced size has arrived, so a failed download never leaves a file that looks
//! complete. The name comes from the server and is refused unless it is a plain file
//! name (no `/`, no `..`, no NUL or other control characters, not hidden). Any failure
//! is one line on stderr and exit status 1 (2 for a usage error).

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/file_proto.rs"]
mod proto;

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framecast::codec::{decode_frame, Codec, Endian, Framing};
use indicatif::{ProgressBar, ProgressStyle};

use proto::{Entry, Header, Request};

/// How long a connect or a silent server may take before the client gives up.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 256 << 10;

/// A connection to the server, reading whole frames.
struct Conn {
    stream: TcpStream,
    /// Received bytes not yet cut into frames.
    buf: BytesMut,
    /// `u32be`, refusing frames over [`proto::MAX_FRAME`] before allocating for them.
    codec: Codec,
}

impl Conn {
    fn connect(addr: &str) -> Result<Conn, String> {
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .collect();
        let mut last = format!("{addr}: no address");
        for sock in addrs {
            match TcpStream::connect_timeout(&sock, TIMEOUT) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(TIMEOUT))
                        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
                        .and_then(|()| stream.set_nodelay(true))
                        .map_err(|e| format!("{addr}: {e}"))?;
                    let framing = Framing::Length {
                        width: 4,
                        endian: Endian::Big,
                    };
                    return Ok(Conn {
                        stream,
                        buf: BytesMut::new(),
                        codec: Codec::new(framing, proto::MAX_FRAME),
                    });
                }
                Err(e) => last = format!("cannot connect to {sock}: {e}"),
            }
        }
        Err(last)
    }

    fn send(&mut self, request: Request) -> Result<(), String> {
        let payload = request.to_payload();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("sending the request: {e}"))
    }

    /// The next frame's payload: its kind byte and body.
    fn recv(&mut self) -> Result<(u8, Bytes), String> {
        loop {
            match decode_frame(&mut self.codec, &mut self.buf) {
                Ok(Some(frame)) => {
                    let range = self.codec.payload_range(&frame);
                    let payload = frame.slice(range);
                    let Some(&kind) = payload.first() else {
                        return Err("the server sent an empty frame".into());
                    };
                    return Ok((kind, payload.slice(1..)));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("the server broke the framing: {e}")),
            }
            self.buf.reserve(READ_CHUNK);
            let read = loop {
                // Safe code cannot read into spare capacity: offer zeroed room.
                let start = self.buf.len();
                self.buf.resize(start + READ_CHUNK, 0);
                match self.stream.read(&mut self.buf[start..]) {
                    Ok(n) => {
                        self.buf.truncate(start + n);
                        break n;
                    }
                    Err(e) => {
                        self.buf.truncate(start);
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(match e.kind() {
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                                    format!("the server sent nothing for {TIMEOUT:?}")
                                }
                                _ => format!("reading from the server: {e}"),
                            });
                        }
                    }
                }
            };
            if read == 0 {
                return Err(if self.buf.is_empty() {
                    "the server closed the connection".into()
                } else {
                    "the server closed the connection in the middle of a frame".into()
                });
            }
        }
    }

    fn list(&mut self) -> Result<Vec<Entry>, String> {
        self.send(Request::List)?;
        match self.recv()? {
            (proto::LISTING, body) => {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| String::from("the list is not UTF-8"))?;
                proto::parse_list(text).map_err(|e| format!("the list: {e}"))
            }
            (proto::ERROR, body) => Err(server_error(&body)),
            (kind, _) => Err(unexpected(kind, "the list")),
        }
    }

    /// Downloads file `index` into `out`; returns the path written.
    fn get(&mut self, index: u32, out: &Path) -> Result<PathBuf, String> {
        self.send(Request::Get(index))?;
        let header = match self.recv()? {
            (proto::HEADER, body) => {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| String::from("the header is not UTF-8"))?;
                proto::parse_header(text).map_err(|e| format!("the header: {e}"))?
            }
            (proto::ERROR, body) => return Err(server_error(&body)),
            (kind, _) => return Err(unexpected(kind, "a header")),
        };
        let name = safe_name(&header.name)?;
        let part = out.join(format!(".{name}.part"));
        let done = out.join(name);
        match self.receive_into(&header, &part) {
            Ok(()) => match std::fs::rename(&part, &done) {
                Ok(()) => Ok(done),
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    Err(format!("{}: {e}", done.display()))
                }
            },
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// Writes the header's `size` bytes of `'D'` frames to `path`, with a progress bar.
    fn receive_into(&mut self, header: &Header, path: &Path) -> Result<(), String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file = BufWriter::with_capacity(proto::MAX_DATA, file);
        let bar = progress_bar(header);
        let mut got = 0u64;
        while got < header.size {
            let (kind, body) = self.recv().map_err(|e| {
                bar.abandon();
                format!("{e} after {got} of {} bytes", header.size)
            })?;
            match kind {
                proto::DATA => {
                    got += body.len() as u64;
                    if got > header.size {
                        bar.abandon();
                        return Err(format!(
                            "the server sent more than the {} bytes it announced",
                            header.size
                        ));
                    }
                    file.write_all(&body)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    bar.set_position(got);
                }
                proto::ERROR => {
                    bar.abandon();
                    return Err(format!(
                        "{} after {got} of {} bytes",
                        server_error(&body),
                        header.size
                    ));
                }
                kind => {
                    bar.abandon();
                    return Err(unexpected(kind, "file data"));
                }
            }
        }
        let file = file
            .into_inner()
            .map_err(|e| format!("{}: {}", path.display(), e.error()))?;
        let written = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if written != header.size {
            bar.abandon();
            return Err(format!(
                "{} holds {written} bytes, not the {} announced",
                path.display(),
                header.size
            ));
        }
        bar.finish();
        Ok(())
    }
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn progress_bar(header: &Header) -> ProgressBar {
    let bar = ProgressBar::new(header.size);
    let template =
        "{msg} [{bar:30}] {bytes}/{total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta}";
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(printable(&header.name));
    bar
}

/// `name` if it is safe to create in the output folder as it is.
fn safe_name(name: &str) -> Result<&str, String> {
    let refuse = |why: &str| Err(format!("refusing the server's file name {name:?}: {why}"));
    if name.is_empty() {
        return refuse("empty");
    }
    if name.len() > proto::MAX_NAME {
        return refuse("too long");
    }
    if name.contains(['/', '\\']) {
        return refuse("it is a path");
    }
    if name.starts_with('.') {
        return refuse("hidden, or a parent folder");
    }
    if name.chars().any(char::is_control) {
        return refuse("control characters");
    }
    Ok(name)
}

/// `text` with control characters escaped, fit for a terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An `'E'` frame's text, for the one line the client prints.
fn server_error(body: &[u8]) -> String {
    format!("server: {}", printable(&String::from_utf8_lossy(body)))
}

fn unexpected(kind: u8, wanted: &str) -> String {
    format!(
        "the server sent a {:?} frame where {wanted} was due",
        char::from(kind)
    )
}

fn print_list(entries: &[Entry]) {
    println!("{:>5}  {:>14}  name", "index", "size");
    for e in entries {
        println!("{:>5}  {:>14}  {}", e.index, e.size, printable(&e.name));
    }
}

/// What the command line asks for.
enum Action {
    List,
    Get(u32),
    Ask,
}

struct Args {
    addr: String,
    action: Action,
    out: PathBuf,
}

const USAGE: &str = "usage: file_client ADDR [--list | --get N] [--out DIR]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut action = Action::Ask;
    let mut out = PathBuf::from(".");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => action = Action::List,
            "--get" => {
                let n = args.next().ok_or("--get needs a file number")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--get takes a file number, not {n:?}"))?;
                action = Action::Get(n);
            }
            "--out" => out = args.next().ok_or("--out needs a folder")?.into(),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            _ if addr.is_none() => addr = Some(arg),
            _ => return Err(format!("one address only ({arg}?)")),
        }
    }
    Ok(Args {
        addr: addr.ok_or("which server? (ADDR, e.g. 127.0.0.1:7070)")?,
        action,
        out,
    })
}

/// Prints the list and asks for a number on stdin.
fn ask(conn: &mut Conn) -> Result<u32, String> {
    let entries = conn.list()?;
    if entries.is_empty() {
        return Err("the server offers no files".into());
    }
    print_list(&entries);
    print!("file to download (index): ");
    io::stdout().flush().map_err(|e| format!("stdout: {e}"))?;
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    let line = line.trim();
    line.parse()
        .map_err(|_| format!("{line:?} is not a file number"))
}

fn run(args: &Args) -> Result<(), String> {
    let mut conn = Conn::connect(&args.addr)?;
    let index = match args.action {
        Action::List => {
            print_list(&conn.list()?);
            return Ok(());
        }
        Action::Get(index) => index,
        Action::Ask => ask(&mut conn)?,
    };
    let path = conn.get(index, &args.out)?;
    eprintln!("saved {}", printable(&path.display().to_string()));
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("file_client: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("file_client: {problem}");
            ExitCode::from(1)
        }
    }
}
