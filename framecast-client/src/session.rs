//! One connection, driven by a mio loop over two sources: the socket and a [`Waker`]
//! that the stdin thread ([`crate::input`]) rings when a line is ready. Everything the
//! client sends goes through one output queue; everything it receives goes through
//! [`Receiver`] and is shown, or compared against the file sent ([`EchoCheck`]).
//!
//! The run ends at the first of: `--count` frames received, the server's close, the
//! `--wait` after our half-close running out, `--timeout`, or a failure.

use std::io::{self, IsTerminal, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use framecast::codec::{Codec, Framing, MAX_FRAME_LIMIT};
use framecast::reactor::{Stream, TlsStream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::args::Args;
use crate::failure::{describe, Failure};
use crate::input::{self, Input};
use crate::recv::{Received, Receiver};
use crate::show;
use crate::target::Target;
use crate::wire::{encode, EchoCheck, Wire};

/// The connection.
const SOCKET: Token = Token(0);
/// The stdin thread's bell.
const WAKER: Token = Token(1);

/// The longest a connect may take when `--timeout` does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket per call.
const READ_CHUNK: usize = 64 << 10;
/// Bytes of the file moved into the output queue at a time: the file is streamed, so
/// at most this much of it is in memory.
const FILE_CHUNK: usize = 64 << 10;
/// Queued output above which no more typed lines are taken from the stdin thread (it
/// then blocks): a fast pipe waits for a slow server instead of filling memory.
const OUTPUT_HIGH: usize = 256 << 10;

/// Connects to the target in `args` and runs until the run's end (module docs).
///
/// # Errors
/// A [`Failure`] for each way a run can fail; its exit code says which.
pub fn run(args: &Args) -> Result<(), Failure> {
    let deadline = args.timeout.map(|limit| (Instant::now() + limit, limit));
    let codec = Codec::new(args.framing, MAX_FRAME_LIMIT);
    let mut out = BytesMut::new();
    for text in &args.send {
        encode(&codec, text.as_bytes(), &mut out)
            .map_err(|e| Failure::Usage(format!("--send {text:?} as {}: {e}", args.framing)))?;
    }
    let file = match &args.send_file {
        Some(path) => Some(Outgoing::open(path.clone(), args.framing)?),
        None => None,
    };
    let echo = match &args.send_file {
        Some(path) if !args.no_verify => Some(EchoCheck::open(path, args.framing)?),
        _ => None,
    };
    if let Target::Udp { .. } = &args.addr {
        return crate::datagram::run(args, deadline);
    }
    let stream = connect(args, deadline)?;
    let poll = Poll::new().map_err(|e| Failure::Local(format!("cannot poll: {e}")))?;
    let (input, waker) = input::attach(args.is_scripted(), poll.registry(), WAKER)?.unzip();
    if input.is_some() && io::stdin().is_terminal() && io::stderr().is_terminal() {
        eprintln!(
            "connected to {} ({}): each line is sent as a frame; Ctrl-D ends, Ctrl-C quits",
            args.addr, args.framing
        );
    }
    Session {
        poll,
        _waker: waker,
        stream,
        interest: None,
        out,
        file,
        codec,
        rx: Receiver::new(args.framing, args.max_frame),
        framing: args.framing,
        echo,
        large: None,
        input,
        write_shut: false,
        quiet_until: None,
        wait: args.wait,
        deadline,
        count: args.count,
        received: 0,
        hex: args.hex,
        stdout: io::stdout(),
        line: String::new(),
        chunk: vec![0; READ_CHUNK.max(FILE_CHUNK)],
    }
    .run()
}

/// Connects to the target in `args`: a Unix socket, or the first address that answers
/// (over TLS, with the handshake done).
fn connect(args: &Args, deadline: Option<(Instant, Duration)>) -> Result<Stream, Failure> {
    let target = &args.addr;
    let (addrs, tls) = match target {
        Target::Tcp { addrs, .. } => (addrs, None),
        Target::Tls { addrs, host, .. } => (addrs, Some(host)),
        Target::Unix { path } => {
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(|error| {
                Failure::Unreachable {
                    target: target.to_string(),
                    error,
                }
            })?;
            stream
                .set_nonblocking(true)
                .map_err(|e| Failure::Local(format!("socket: {}", describe(&e))))?;
            return Ok(Stream::Unix(mio::net::UnixStream::from_std(stream)));
        }
        Target::Udp { .. } => {
            return Err(Failure::Usage("UDP has no connection".into()));
        }
    };
    let Some(host) = tls else {
        let tcp = connect_tcp(target, addrs, deadline)?;
        return Ok(Stream::Tcp(mio::net::TcpStream::from_std(tcp)));
    };
    let config = tls_config(args)?;
    let tcp = connect_tcp(target, addrs, deadline)?;
    handshake(args, config, tcp, host, deadline)
}

/// The TLS client settings the flags ask for: `--tls-ca`, or `--insecure`.
fn tls_config(args: &Args) -> Result<Arc<rustls::ClientConfig>, Failure> {
    let ca = match (&args.tls_ca, args.insecure) {
        (Some(ca), _) => Some(ca.as_path()),
        (None, true) => None,
        (None, false) => {
            return Err(Failure::Usage(
                "a tls:// target needs --tls-ca PEM (or --insecure)".into(),
            ))
        }
    };
    framecast::reactor::client_config(ca).map_err(|e| Failure::Local(format!("--tls-ca {e}")))
}

/// Does the TLS handshake on `tcp`, blocking for at most the time left, then hands the
/// session on non-blocking.
fn handshake(
    args: &Args,
    config: Arc<rustls::ClientConfig>,
    mut tcp: StdTcpStream,
    host: &str,
    deadline: Option<(Instant, Duration)>,
) -> Result<Stream, Failure> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Failure::Usage(format!("'{host}' is not a server name: {e}")))?;
    let mut tls = rustls::ClientConnection::new(config, name)
        .map_err(|e| Failure::Local(format!("TLS: {e}")))?;
    let socket = |e: io::Error| Failure::Local(format!("socket: {}", describe(&e)));
    let limit = match deadline {
        Some((at, _)) => at
            .saturating_duration_since(Instant::now())
            .min(CONNECT_TIMEOUT),
        None => CONNECT_TIMEOUT,
    };
    tcp.set_nonblocking(false).map_err(socket)?;
    tcp.set_read_timeout(Some(limit.max(Duration::from_millis(1))))
        .map_err(socket)?;
    tcp.set_write_timeout(Some(limit.max(Duration::from_millis(1))))
        .map_err(socket)?;
    while tls.is_handshaking() {
        if let Err(error) = tls.complete_io(&mut tcp) {
            if let Some((at, limit)) = deadline {
                if Instant::now() >= at {
                    return Err(Failure::TimedOut(limit));
                }
            }
            return Err(Failure::Unreachable {
                target: args.addr.to_string(),
                error: io::Error::new(error.kind(), format!("TLS handshake: {error}")),
            });
        }
    }
    tcp.set_read_timeout(None).map_err(socket)?;
    tcp.set_write_timeout(None).map_err(socket)?;
    tcp.set_nonblocking(true).map_err(socket)?;
    let stream = TlsStream::new(mio::net::TcpStream::from_std(tcp), tls);
    Ok(Stream::Tls(Box::new(stream)))
}

/// Connects to the first of `addrs` that answers, non-blocking.
fn connect_tcp(
    target: &Target,
    addrs: &[std::net::SocketAddr],
    deadline: Option<(Instant, Duration)>,
) -> Result<StdTcpStream, Failure> {
    let mut last = None;
    for addr in addrs {
        let limit = match deadline {
            Some((at, limit)) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(CONNECT_TIMEOUT),
                _ => return Err(Failure::TimedOut(limit)),
            },
            None => CONNECT_TIMEOUT,
        };
        match StdTcpStream::connect_timeout(addr, limit) {
            Ok(stream) => {
                // Frames typed by hand are small: send each at once.
                let _ = stream.set_nodelay(true);
                stream
                    .set_nonblocking(true)
                    .map_err(|e| Failure::Local(format!("socket: {}", describe(&e))))?;
                return Ok(stream);
            }
            Err(error) => {
                if let Some((at, limit)) = deadline {
                    if Instant::now() >= at {
                        return Err(Failure::TimedOut(limit));
                    }
                }
                last = Some((addr, error));
            }
        }
    }
    Err(match last {
        Some((addr, error)) => Failure::Unreachable {
            target: addr.to_string(),
            error,
        },
        None => Failure::Unreachable {
            target: target.to_string(),
            error: io::Error::new(io::ErrorKind::NotFound, "no address"),
        },
    })
}

/// The file being sent, and its progress bar.
struct Outgoing {
    /// The frame's wire bytes, read on demand.
    wire: Wire,
    /// Bytes, percent and rate on stderr; draws nothing when stderr is not a terminal.
    bar: ProgressBar,
    /// For messages.
    path: PathBuf,
}

impl Outgoing {
    fn open(path: PathBuf, framing: Framing) -> Result<Outgoing, Failure> {
        let wire = Wire::open(&path, framing)?;
        let bar =
            ProgressBar::with_draw_target(Some(wire.wire_len()), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {percent}% {binary_bytes_per_sec}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(format!("sending {}", path.display()));
        Ok(Outgoing { wire, bar, path })
    }
}

/// A frame over `--max-frame` being received piece by piece.
struct LargeFrame {
    /// Wire bytes received so far.
    bytes: u64,
    /// True when it is being compared as the echo of the file.
    is_echo: bool,
}

/// The state of one run.
struct Session {
    /// Readiness of the socket and the waker.
    poll: Poll,
    /// Kept for the whole run: the stdin thread drops its handle when it ends, and
    /// closing the waker's last handle would unregister it, losing a wake-up still
    /// unread (the last lines and the end of input).
    _waker: Option<Arc<Waker>>,
    /// The connection.
    stream: Stream,
    /// What the socket is registered for (`None`: not yet), derived from the state.
    interest: Option<Interest>,
    /// Encoded frames not yet written.
    out: BytesMut,
    /// The file still to send, after `out`.
    file: Option<Outgoing>,
    /// Encodes typed lines.
    codec: Codec,
    /// Cuts received bytes into frames.
    rx: Receiver,
    /// For messages.
    framing: Framing,
    /// The echo of the file, until it came back whole.
    echo: Option<EchoCheck>,
    /// The oversized frame being received, if any.
    large: Option<LargeFrame>,
    /// Lines from the stdin thread; `None` when scripted or after the end of input.
    input: Option<mpsc::Receiver<Input>>,
    /// True once our side is half-closed: everything was sent.
    write_shut: bool,
    /// After the half-close: when `--wait` runs out (see `on_readable`).
    quiet_until: Option<Instant>,
    /// `--wait`.
    wait: Duration,
    /// `--timeout`: when, and the limit for the message.
    deadline: Option<(Instant, Duration)>,
    /// `--count`.
    count: Option<u64>,
    /// Frames received (shown, reported by size, or the echo).
    received: u64,
    /// `--hex`.
    hex: bool,
    /// Where frames are printed.
    stdout: io::Stdout,
    /// Scratch for one printed line.
    line: String,
    /// Scratch for socket reads and file chunks.
    chunk: Vec<u8>,
}

/// Whether the run goes on after a handler (failures are `Err`).
enum Flow {
    /// Keep going.
    Continue,
    /// The run is over.
    Done,
}

impl Session {
    fn run(mut self) -> Result<(), Failure> {
        let mut events = Events::with_capacity(16);
        loop {
            self.pull_input()?;
            self.flush()?;
            self.update_interest()?;
            let now = Instant::now();
            if let Some((at, limit)) = self.deadline {
                if now >= at {
                    return Err(Failure::TimedOut(limit));
                }
            }
            if self.quiet_until.is_some_and(|at| now >= at) {
                return self.end_of_wait();
            }
            let timeout = [self.deadline.map(|(at, _)| at), self.quiet_until]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Local(format!("poll: {e}"))),
            }
            for event in &events {
                match event.token() {
                    // Read on any socket event: an error or a hang-up shows as a read.
                    SOCKET => {
                        if let Flow::Done = self.on_readable()? {
                            return Ok(());
                        }
                    }
                    // The stdin thread has lines: taken at the top of the loop.
                    WAKER => {}
                    // Spurious events happen.
                    _ => {}
                }
            }
        }
    }

    /// Takes typed lines from the stdin thread while the output queue has room.
    fn pull_input(&mut self) -> Result<(), Failure> {
        while self.out.len() < OUTPUT_HIGH {
            let Some(input) = &self.input else { break };
            match input.try_recv() {
                Ok(Input::Line(line)) => {
                    if let Err(e) = encode(&self.codec, &line, &mut self.out) {
                        eprintln!("framecast-client: not sent as {}: {e}", self.framing);
                    }
                }
                Ok(Input::Eof) | Err(TryRecvError::Disconnected) => self.input = None,
                Ok(Input::Error(e)) => {
                    return Err(Failure::Local(format!("reading stdin: {}", describe(&e))))
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        Ok(())
    }

    /// Writes queued frames and the file until the socket would block; half-closes
    /// once everything is sent and the input has ended.
    fn flush(&mut self) -> Result<(), Failure> {
        loop {
            if self.out.is_empty() && !self.refill()? {
                break;
            }
            match self.stream.write(&self.out) {
                Ok(0) => return Err(Failure::Reset("the connection stopped taking data".into())),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::io("sending", &e)),
            }
        }
        // TLS records the socket has not taken yet go first.
        self.stream
            .send_pending()
            .map_err(|e| Failure::io("sending", &e))?;
        if self.stream.wants_write() {
            return Ok(());
        }
        if !self.write_shut && self.input.is_none() {
            match self.stream.shutdown_write() {
                Ok(()) => {}
                // The server has gone already; its close is read next.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(Failure::io("closing our side", &e)),
            }
            self.write_shut = true;
            // With --count, only the frames (or --timeout) end the run.
            if self.count.is_none() {
                self.quiet_until = Some(Instant::now() + self.wait);
            }
        }
        Ok(())
    }

    /// Moves the next chunk of the file into the empty output queue; false when there
    /// is nothing more to send.
    fn refill(&mut self) -> Result<bool, Failure> {
        let Some(file) = &mut self.file else {
            return Ok(false);
        };
        let buf = &mut self.chunk[..FILE_CHUNK];
        let n = file
            .wire
            .read(buf)
            .map_err(|e| Failure::Local(format!("{}: {}", file.path.display(), describe(&e))))?;
        if n == 0 {
            file.bar.finish_and_clear();
            self.file = None;
            return Ok(false);
        }
        self.out.extend_from_slice(&buf[..n]);
        file.bar.inc(n as u64);
        Ok(true)
    }

    /// Registers the socket for what the state needs: always readable, writable only
    /// while something waits to be sent.
    fn update_interest(&mut self) -> Result<(), Failure> {
        let wanted = if self.out.is_empty() && self.file.is_none() && !self.stream.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self.interest == Some(wanted) {
            return Ok(());
        }
        let registry = self.poll.registry();
        let result = match self.interest {
            None => registry.register(&mut self.stream, SOCKET, wanted),
            Some(_) => registry.reregister(&mut self.stream, SOCKET, wanted),
        };
        result.map_err(|e| Failure::Local(format!("poll: {e}")))?;
        self.interest = Some(wanted);
        Ok(())
    }

    /// Reads until the socket would block, handling every frame as it completes.
    fn on_readable(&mut self) -> Result<Flow, Failure> {
        loop {
            let n = match self.stream.read(&mut self.chunk[..READ_CHUNK]) {
                Ok(0) => return self.on_eof().map(|()| Flow::Done),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Continue),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail_connection("receiving", &e)),
            };
            self.rx.extend(&self.chunk[..n]);
            // `--wait` bounds the wait for replies, except for the file's echo: while
            // it is still coming back, each arrival gives it another `--wait`.
            if self.quiet_until.is_some() && self.echo.is_some() {
                self.quiet_until = Some(Instant::now() + self.wait);
            }
            if let Flow::Done = self.take_frames()? {
                return Ok(Flow::Done);
            }
        }
    }

    /// A broken connection, said with what was in flight.
    fn fail_connection(&self, doing: &str, error: &io::Error) -> Failure {
        match (&self.file, Failure::io(doing, error)) {
            (Some(file), Failure::Reset(message)) => Failure::Reset(format!(
                "{message}, after {} of {} bytes of {} (over the daemon's --max-frame?)",
                file.bar.position(),
                file.wire.wire_len(),
                file.path.display()
            )),
            (_, failure) => failure,
        }
    }

    /// Handles every complete frame or piece received.
    fn take_frames(&mut self) -> Result<Flow, Failure> {
        loop {
            let item = self.rx.take().map_err(|e| {
                Failure::Reset(format!(
                    "the server broke the {} framing: {e}",
                    self.framing
                ))
            })?;
            let counted = match item {
                None => return Ok(Flow::Continue),
                Some(Received::Frame(frame)) => self.on_frame(&frame)?,
                Some(Received::Large {
                    chunk,
                    declared,
                    first,
                    last,
                }) => self.on_large(&chunk, declared, first, last)?,
            };
            if counted {
                self.received += 1;
                if self.count.is_some_and(|n| self.received >= n) {
                    return Ok(Flow::Done);
                }
            }
        }
    }

    /// A complete frame: the echo of the file if it has the echo's size, else shown.
    /// True when it counts as a frame received.
    fn on_frame(&mut self, frame: &[u8]) -> Result<bool, Failure> {
        let raw = self.framing == Framing::Raw;
        if let Some(check) = &mut self.echo {
            if raw || frame.len() as u64 == check.wire_len() {
                let used = check.feed(frame)?;
                if check.is_complete() {
                    self.on_echo_verified();
                }
                return match frame.get(used..) {
                    // Raw bytes after the echo are shown as they are.
                    Some(rest) if !rest.is_empty() => self.show(rest).map(|()| true),
                    _ => Ok(self.echo.is_none()),
                };
            }
        }
        // A sub-slice of `frame`, not of self: no copy for `show`.
        let payload = self.rx.payload(frame);
        self.show(payload).map(|()| true)
    }

    /// A piece of an oversized frame: compared as the echo when its declared length is
    /// the file's (or unknown, for lines), else reported by size at its end.
    fn on_large(
        &mut self,
        chunk: &[u8],
        declared: Option<u64>,
        first: bool,
        last: bool,
    ) -> Result<bool, Failure> {
        if first || self.large.is_none() {
            let is_echo = self
                .echo
                .as_ref()
                .is_some_and(|check| declared.is_none_or(|len| len == check.file_len()));
            self.large = Some(LargeFrame { bytes: 0, is_echo });
        }
        let Some(large) = &mut self.large else {
            return Ok(false);
        };
        large.bytes += chunk.len() as u64;
        let (is_echo, bytes) = (large.is_echo, large.bytes);
        if is_echo {
            if let Some(check) = &mut self.echo {
                if check.feed(chunk)? < chunk.len() {
                    return Err(Failure::Mismatch(format!(
                        "echo mismatch: the echo is longer than the {} bytes sent",
                        check.wire_len()
                    )));
                }
            }
        }
        if !last {
            return Ok(false);
        }
        self.large = None;
        if is_echo {
            match &self.echo {
                Some(check) if check.is_complete() => self.on_echo_verified(),
                Some(check) => {
                    return Err(Failure::Mismatch(format!(
                        "echo mismatch: the echo ended after {} of {} bytes",
                        check.matched(),
                        check.wire_len()
                    )))
                }
                None => {}
            }
        } else {
            self.note(&format!(
                "[a frame of {bytes} bytes, over --max-frame: not shown]"
            ))?;
        }
        Ok(true)
    }

    fn on_echo_verified(&mut self) {
        if let Some(check) = self.echo.take() {
            eprintln!(
                "framecast-client: echo verified: {} bytes came back as sent",
                check.wire_len()
            );
        }
    }

    /// Prints a payload on a line of its own.
    fn show(&mut self, payload: &[u8]) -> Result<(), Failure> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.hex {
            show::hex(payload, &mut line);
        } else {
            show::escape(payload, &mut line);
        }
        let result = self.note(&line);
        self.line = line;
        result
    }

    /// Prints a line on stdout, above the progress bar if there is one.
    fn note(&mut self, line: &str) -> Result<(), Failure> {
        let print = || writeln!(self.stdout.lock(), "{line}");
        let result = match &self.file {
            Some(file) => file.bar.suspend(print),
            None => print(),
        };
        result.map_err(|e| Failure::Local(format!("stdout: {}", describe(&e))))
    }

    /// The server closed its side.
    fn on_eof(&mut self) -> Result<(), Failure> {
        if let Some(file) = &self.file {
            return Err(Failure::Reset(format!(
                "the server closed the connection after {} of {} bytes of {} (over the daemon's --max-frame?)",
                file.bar.position(),
                file.wire.wire_len(),
                file.path.display()
            )));
        }
        if !self.rx.is_between_frames() {
            return Err(Failure::Reset(
                "the server closed the connection in the middle of a frame".into(),
            ));
        }
        if let Some(check) = &self.echo {
            return Err(Failure::Mismatch(format!(
                "the server closed the connection before the echo came back ({} of {} bytes did)",
                check.matched(),
                check.wire_len()
            )));
        }
        if let Some(count) = self.count.filter(|&n| self.received < n) {
            return Err(Failure::Reset(format!(
                "the server closed the connection after {} of {count} frames (--count)",
                self.received
            )));
        }
        if !self.write_shut {
            eprintln!("framecast-client: the server closed the connection");
        }
        Ok(())
    }

    /// `--wait` ran out after our half-close.
    fn end_of_wait(&self) -> Result<(), Failure> {
        match &self.echo {
            Some(check) => Err(Failure::Mismatch(format!(
                "no complete echo within --wait {:?} ({} of {} bytes came back)",
                self.wait,
                check.matched(),
                check.wire_len()
            ))),
            None => Ok(()),
        }
    }
}
