//! Streaming bodies through the real reactor, in process: a body far larger than the
//! output cap arrives whole and in order, frames sent behind it keep their place, and
//! `Service::on_body_done` comes once per body, after its last chunk, so a service that
//! pauses a connection while it streams can resume it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use framecast::reactor::Body;
use framecast::service::{ConnId, Ctx, Frame, Service};
use framecast::{Config, Reactor};

/// A body of `left` bytes counting 0, 1, 2, ... (mod 251) from `at`, in u32be frames.
struct Counting {
    at: usize,
    left: usize,
}

impl Body for Counting {
    fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if self.left == 0 {
            return Ok(None);
        }
        let n = self.left.min(max.saturating_sub(4).max(1));
        let mut out = BytesMut::with_capacity(4 + n);
        out.put_u32(n as u32);
        out.extend((self.at..self.at + n).map(|i| (i % 251) as u8));
        self.at += n;
        self.left -= n;
        Ok(Some(out.freeze()))
    }
}

/// On any frame: a body of the size the frame names (decimal), then "after", with the
/// connection paused until the body ends; then "done" and reading resumes.
struct Streamer {
    done: Arc<AtomicUsize>,
}

impl Service for Streamer {
    fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
        let size: usize = std::str::from_utf8(frame.payload())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(ctx.send_body(conn, Box::new(Counting { at: 0, left: size })));
        ctx.send_frame(conn, b"after").unwrap();
        ctx.pause(conn);
    }

    fn on_body_done(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.done.fetch_add(1, Ordering::SeqCst);
        ctx.send_frame(conn, b"done").unwrap();
        ctx.resume(conn);
    }
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).unwrap();
    payload
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_body_larger_than_the_cap_streams_whole_and_its_end_is_reported() {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        max_output: 64 << 10,
        ..Config::default()
    };
    let done = Arc::new(AtomicUsize::new(0));
    let service = Streamer {
        done: Arc::clone(&done),
    };
    let mut reactor = Reactor::bind(config, service).unwrap();
    let addr = reactor.local_addrs()[0];
    let handle = reactor.handle();
    let server = std::thread::spawn(move || reactor.run());

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The second request goes out once the first is answered: the connection was
    // paused while the body streamed, and on_body_done resumed it. (Frames that came
    // in the same read as the first would still be delivered: pausing stops reads,
    // not the run in hand.)
    for expected in [2 << 20, 1000] {
        client
            .write_all(&frame(expected.to_string().as_bytes()))
            .unwrap();
        let mut got = 0;
        while got < expected {
            let chunk = read_frame(&mut client);
            assert!(chunk.len() <= 64 << 10, "a chunk over the cap");
            for (i, b) in chunk.iter().enumerate() {
                assert_eq!(*b as usize, (got + i) % 251, "byte {}", got + i);
            }
            got += chunk.len();
        }
        assert_eq!(got, expected);
        assert_eq!(read_frame(&mut client), b"after");
        assert_eq!(read_frame(&mut client), b"done");
    }
    assert_eq!(done.load(Ordering::SeqCst), 2);

    drop(client);
    handle.shutdown("the test is done");
    assert!(server.join().is_ok());
}
