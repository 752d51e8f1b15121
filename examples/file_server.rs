//! A file server on the framecast reactor: offers the regular files directly inside a
//! folder, by number. The tutorial this replaces pickled a dict of names, loaded each
//! film into memory and trusted `recv` sizes; here a request names an index (never a
//! path), and a file is read in chunks as the client drains its socket, so the
//! server's memory follows `--max-output`, not the file sizes.
//!
//! `cargo run --release --example file_server -- DIR [--listen ADDR] [--max-output SIZE]`
//!
//! ```text
//! every message is one u32be frame whose payload starts with a kind byte:
//!
//!  +----------------+------+------------------------+
//!  | length (u32be) | kind | body (length - 1 bytes)|
//!  +----------------+------+------------------------+
//!
//! client -> server                         server -> client
//!  'L'                  list the files  ->  'L' [{"index":0,"name":"a.mkv","size":7}, ...]
//!  'G' index (u32be)    get file #index ->  'H' {"name":"a.mkv","size":7}
//!                                            'D' up to 1 MiB of the file   } until `size`
//!                                            'D' ...                       } bytes have come
//!  anything else                        ->  'E' what was wrong (UTF-8 text)
//! ```
//!
//! - The list is the folder's regular files in name order, hidden (`.`) files and
//!   names that are not UTF-8 left out. A symbolic link is offered only if it leads to
//!   a regular file inside the folder. An index names the file at that place in the
//!   folder as it is when the request arrives (the header says which file it is).
//! - A bad request or an index past the end gets an `'E'` frame; the connection stays
//!   usable. A declared length over 4 KiB breaks the framing and closes it.
//! - The header's size is the file's size when it is opened; that many bytes follow. A
//!   file that shrinks meanwhile (or cannot be read) ends the download with an `'E'`
//!   frame in place of the next `'D'` frame.
//! - Requests on one connection are answered in order: while a file is being sent,
//!   that connection is not read, so pipelined requests cost nothing until their turn.
//! - Whoever can write DIR is trusted: a file swapped for a link between the listing
//!   check and the open is not guarded against. Files are read on the reactor's
//!   thread, which suits local disks and the page cache, not a slow network mount.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/file_proto.rs"]
mod proto;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::{BufMut, Bytes, BytesMut};
use framecast::codec::{Endian, Framing};
use framecast::reactor::Body;
use framecast::service::{Closed, ConnId, Ctx, Frame, Service};
use framecast::{Config, Reactor};

use proto::{Entry, Header, Request};

/// The service: the folder, and what each busy connection still has to be answered.
struct FileServer {
    /// The served folder, canonical, so a link's target can be checked against it.
    dir: PathBuf,
    /// Connections sending a file now (not read until it ends), with the requests that
    /// arrived behind the one being answered: at most one read's worth, since the
    /// connection is paused from the request that started the download on.
    busy: HashMap<ConnId, VecDeque<Frame>>,
}

/// A file on its way: read a chunk at a time as the connection drains.
struct FileBody {
    file: File,
    /// The name, for error messages.
    name: String,
    /// Bytes promised in the header.
    size: u64,
    /// Bytes read and handed on so far.
    sent: u64,
    /// An error frame has ended the download early.
    failed: bool,
}

impl Body for FileBody {
    fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        let left = self.size - self.sent;
        if self.failed || left == 0 {
            return Ok(None);
        }
        // Header and kind byte inside `max`, at least one byte of data, at most 1 MiB.
        let room = max.saturating_sub(5).clamp(1, proto::MAX_DATA);
        let want = usize::try_from(left).map_or(room, |left| left.min(room));
        let mut chunk = BytesMut::zeroed(5 + want);
        let read = read_full(&mut self.file, &mut chunk[5..]);
        let problem = match read {
            Ok(n) if n == want => None,
            Ok(n) => Some(format!(
                "{} shrank while being sent: {} bytes of the {} announced",
                self.name,
                self.sent + n as u64,
                self.size
            )),
            Err(e) => Some(format!("reading {} failed: {e}", self.name)),
        };
        if let Some(problem) = problem {
            eprintln!("file_server: {problem}");
            self.failed = true;
            return Ok(Some(frame(proto::ERROR, problem.as_bytes())));
        }
        self.sent += want as u64;
        // `want <= MAX_DATA`, so the length fits a u32.
        let header = ((want + 1) as u32).to_be_bytes();
        chunk[..4].copy_from_slice(&header);
        chunk[4] = proto::DATA;
        Ok(Some(chunk.freeze()))
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A u32be frame carrying `kind` and `body` (for the body, which frames its own bytes).
fn frame(kind: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    // Error texts are short, far under 4 GiB.
    out.put_u32(body.len() as u32 + 1);
    out.put_u8(kind);
    out.put_slice(body);
    out.freeze()
}

/// A file the folder offers: its place, name and size, and the path to open.
struct Offered {
    entry: Entry,
    path: PathBuf,
}

impl FileServer {
    /// The regular files directly inside the folder, in name order.
    fn scan(&self) -> io::Result<Vec<Offered>> {
        let mut found = Vec::new();
        for dirent in std::fs::read_dir(&self.dir)? {
            let Ok(dirent) = dirent else { continue };
            let Ok(name) = dirent.file_name().into_string() else {
                continue; // not UTF-8: JSON cannot name it
            };
            if name.starts_with('.') {
                continue; // hidden, and where a client keeps its partial downloads
            }
            let Some(path) = self.inside(&dirent.path()) else {
                continue;
            };
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => found.push((name, meta.len(), path)),
                _ => {}
            }
        }
        found.sort();
        Ok(found
            .into_iter()
            .zip(0u32..)
            .map(|((name, size, path), index)| Offered {
                entry: Entry { index, name, size },
                path,
            })
            .collect())
    }

    /// `path` itself, or where its link leads if that is inside the folder.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(path.to_owned());
        }
        let target = std::fs::canonicalize(path).ok()?;
        target.starts_with(&self.dir).then_some(target)
    }

    /// Answers one request on `conn`: a listing, a download, or an error frame.
    fn answer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, payload: &[u8]) {
        match Request::parse(payload) {
            Err(problem) => reply(ctx, conn, proto::ERROR, problem.as_bytes()),
            Ok(Request::List) => match self.scan() {
                Ok(files) => {
                    let entries: Vec<Entry> = files.into_iter().map(|f| f.entry).collect();
                    let json = proto::list_json(&entries);
                    if json.len() < proto::MAX_FRAME {
                        reply(ctx, conn, proto::LISTING, json.as_bytes());
                    } else {
                        let problem = format!("{} files: too many to list", entries.len());
                        reply(ctx, conn, proto::ERROR, problem.as_bytes());
                    }
                }
                Err(e) => {
                    eprintln!("file_server: reading {}: {e}", self.dir.display());
                    reply(ctx, conn, proto::ERROR, b"the folder cannot be read");
                }
            },
            Ok(Request::Get(index)) => match self.open(index) {
                Ok((header, file)) => self.send_file(ctx, conn, header, file),
                Err(problem) => reply(ctx, conn, proto::ERROR, problem.as_bytes()),
            },
        }
    }

    /// Opens file `index`, checked as the listing checks it, and says what it holds.
    fn open(&self, index: u32) -> Result<(Header, File), String> {
        let files = self.scan().map_err(|e| {
            eprintln!("file_server: reading {}: {e}", self.dir.display());
            String::from("the folder cannot be read")
        })?;
        let count = files.len();
        let Some(offered) = usize::try_from(index)
            .ok()
            .and_then(|i| files.into_iter().nth(i))
        else {
            return Err(format!("no file {index}: the list has {count}"));
        };
        let name = offered.entry.name;
        let opened = File::open(&offered.path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        match opened {
            Ok((file, meta)) if meta.is_file() => Ok((
                Header {
                    name,
                    size: meta.len(),
                },
                file,
            )),
            Ok(_) => Err(format!("{name} is no longer a regular file")),
            Err(e) => {
                eprintln!("file_server: opening {name}: {e}");
                Err(format!("{name} cannot be opened"))
            }
        }
    }

    /// Sends the header, then the file as a body; `conn` is not read until it ends.
    fn send_file(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, header: Header, file: File) {
        reply(
            ctx,
            conn,
            proto::HEADER,
            proto::header_json(&header).as_bytes(),
        );
        let body = FileBody {
            file,
            name: header.name,
            size: header.size,
            sent: 0,
            failed: false,
        };
        if ctx.send_body(conn, Box::new(body)) {
            ctx.pause(conn);
            self.busy.entry(conn).or_default();
        }
    }
}

/// Queues one reply frame; a connection gone meanwhile is no error.
fn reply(ctx: &mut Ctx<'_>, conn: ConnId, kind: u8, body: &[u8]) {
    if let Err(e) = ctx.send_frame(conn, &proto::payload(kind, body)) {
        log::debug!("{conn}: reply dropped: {e}");
    }
}

impl Service for FileServer {
    fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
        match self.busy.get_mut(&conn) {
            // Part of the read that brought the request being answered: its turn
            // comes when the download ends.
            Some(waiting) => waiting.push_back(frame),
            None => self.answer(ctx, conn, frame.payload()),
        }
    }

    fn on_body_done(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(mut waiting) = self.busy.remove(&conn) else {
            return;
        };
        while let Some(frame) = waiting.pop_front() {
            self.answer(ctx, conn, frame.payload());
            if let Some(next) = self.busy.get_mut(&conn) {
                // Another download started: the rest wait behind it.
                next.extend(waiting);
                return;
            }
        }
        ctx.resume(conn);
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _why: &Closed) {
        self.busy.remove(&conn);
    }

    fn describe(&self) -> String {
        format!("file server for {}", self.dir.display())
    }
}

/// What the command line asks for.
struct Args {
    dir: PathBuf,
    listen: String,
    max_output: usize,
}

const USAGE: &str = "usage: file_server DIR [--listen ADDR] [--max-output SIZE]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut listen = framecast::config::DEFAULT_LISTEN.to_owned();
    let mut max_output = framecast::config::DEFAULT_MAX_OUTPUT;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--max-output" => {
                let size = args.next().ok_or("--max-output needs a size")?;
                max_output = framecast::units::parse_size(&size).map_err(|e| e.to_string())?;
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("one folder only ({arg}?)")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("which folder?")?,
        listen,
        max_output,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("file_server: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = match std::fs::canonicalize(&args.dir) {
        Ok(dir) if dir.is_dir() => dir,
        Ok(_) => {
            eprintln!("file_server: {} is not a folder", args.dir.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("file_server: {}: {e}", args.dir.display());
            return ExitCode::from(2);
        }
    };
    let listen = match framecast::config::parse_listen(&args.listen) {
        Ok(listen) => listen,
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        listen,
        framing: Framing::Length {
            width: 4,
            endian: Endian::Big,
        },
        max_frame: proto::MAX_REQUEST,
        max_output: args.max_output,
        ..Config::default()
    };
    let service = FileServer {
        dir,
        busy: HashMap::new(),
    };
    let mut reactor = match Reactor::bind(config, service) {
        Ok(reactor) => reactor,
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::from(1);
        }
    };
    for addr in reactor.local_addrs() {
        println!("file_server listening on {addr}");
    }
    match reactor.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("file_server: {e}");
            ExitCode::from(1)
        }
    }
}
