//! The keyboard side: a thread that reads stdin line by line and hands each line to the
//! event loop through a bounded channel, waking the loop's [`mio::Waker`]. A blocking
//! read on a thread of its own is the portable way to watch a terminal and a socket at
//! once without an async runtime.

use std::io::{self, BufRead};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;

use mio::{Registry, Token, Waker};

use crate::failure::Failure;

/// Lines the thread may read ahead of the loop: it blocks after that, so a fast pipe on
/// stdin waits for a slow server instead of filling memory.
const LINES_AHEAD: usize = 64;

/// What the stdin thread saw.
#[derive(Debug)]
pub enum Input {
    /// One line, without its `\n` (or `\r\n`).
    Line(Vec<u8>),
    /// End of input (Ctrl-D, or the end of a pipe).
    Eof,
    /// Reading failed; the thread stopped.
    Error(io::Error),
}

/// Starts the stdin thread; the loop reads what it sends after each wake-up.
pub fn spawn(waker: Arc<Waker>) -> io::Result<Receiver<Input>> {
    let (tx, rx) = sync_channel(LINES_AHEAD);
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_lines(&tx, &waker))?;
    Ok(rx)
}

/// The stdin thread's lines and the waker that keeps it registered.
pub type Attached = (Receiver<Input>, Arc<Waker>);

/// Unless the run is scripted (`--send`, `--send-file`: stdin is not read then), a
/// waker registered under `token` and the stdin thread that wakes the loop with it.
pub fn attach(
    scripted: bool,
    registry: &Registry,
    token: Token,
) -> Result<Option<Attached>, Failure> {
    if scripted {
        return Ok(None);
    }
    let waker = Waker::new(registry, token)
        .map(Arc::new)
        .map_err(|e| Failure::Local(format!("cannot poll: {e}")))?;
    let input =
        spawn(Arc::clone(&waker)).map_err(|e| Failure::Local(format!("cannot read stdin: {e}")))?;
    Ok(Some((input, waker)))
}

fn read_lines(tx: &SyncSender<Input>, waker: &Waker) {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    loop {
        let mut line = Vec::new();
        let input = match stdin.read_until(b'\n', &mut line) {
            Ok(0) => Input::Eof,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                }
                Input::Line(line)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Input::Error(e),
        };
        let last = !matches!(input, Input::Line(_));
        // A send fails only when the loop has finished: nothing left to do.
        if tx.send(input).is_err() || waker.wake().is_err() || last {
            return;
        }
    }
}
