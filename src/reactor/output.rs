//! A connection's output queue: refcounted [`Bytes`] waiting to be written, flushed
//! with vectored writes. A short write keeps the unwritten tail at the front, in order;
//! nothing is copied, dropped or duplicated.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// Slices handed to one `write_vectored` call: enough to batch a whole burst of
/// queued runs, well under Linux's `IOV_MAX` of 1024.
const MAX_SLICES: usize = 64;

/// What a queued chunk costs besides its bytes (its `Bytes` handle in the queue, its
/// share of a refcount), counted against the output cap: a flood of tiny frames must
/// not hold many times the cap in bookkeeping.
pub const CHUNK_COST: usize = 64;

/// Bytes waiting to be written, in order.
#[derive(Debug, Default)]
pub struct Output {
    /// Queued chunks; the front one may be partly written already (advanced).
    queue: VecDeque<Bytes>,
    /// Total bytes queued, the figure backpressure and slow-consumer caps look at.
    len: usize,
}

impl Output {
    /// Queues `bytes` after everything already queued.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// What the queue holds in memory, as the output cap counts it: its bytes plus
    /// [`CHUNK_COST`] per chunk.
    pub fn footprint(&self) -> usize {
        self.len + self.queue.len() * CHUNK_COST
    }

    /// What waits behind the chunk being written, counted as [`Output::footprint`]
    /// counts: what a recipient has fallen behind by. The front chunk is one read's
    /// frames, already on their way, so a recipient that is taking a large frame is
    /// not behind for it.
    pub fn backlog(&self) -> usize {
        match self.queue.front() {
            Some(front) => self.footprint() - front.len() - CHUNK_COST,
            None => 0,
        }
    }

    /// Drops everything behind the chunk being written (which must finish, or the
    /// peer would get half a frame): for a connection closed by a policy, whose
    /// backlog is not going to be read. Returns the bytes dropped.
    pub fn keep_front(&mut self) -> usize {
        let kept = self.queue.front().map_or(0, Bytes::len);
        self.queue.truncate(1);
        let dropped = self.len - kept;
        self.len = kept;
        dropped
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes queued bytes until the queue is empty or `dst` would block. Returns how
    /// many bytes were written; the queue keeps whatever was not.
    ///
    /// # Errors
    /// Any write error other than `WouldBlock` (returned as progress so far) and
    /// `Interrupted` (retried); a write of zero bytes is `WriteZero`.
    pub fn write_to<W: Write>(&mut self, dst: &mut W) -> io::Result<usize> {
        let mut written = 0;
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self
                .queue
                .iter()
                .zip(slices.iter_mut())
                .map(|(b, s)| *s = IoSlice::new(b))
                .count();
            match dst.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    written += n;
                }
                Err(e) if super::interrupted(&e) => {}
                Err(e) if super::would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `step` bytes per call and blocks every `block_every`th call.
    struct Choppy {
        out: Vec<u8>,
        step: usize,
        calls: usize,
        block_every: usize,
    }

    impl Write for Choppy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % self.block_every == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.calls % 7 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut left = self.step;
            for buf in bufs {
                let n = left.min(buf.len());
                self.out.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Ok(self.step - left)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_every_byte_in_order() {
        let chunks: Vec<Bytes> = (0..300u32)
            .map(|i| Bytes::from(vec![i as u8; (i as usize * 37) % 200]))
            .collect();
        let expected: Vec<u8> = chunks.concat();
        for step in [1, 13, 100, 4096] {
            let mut out = Output::default();
            chunks.iter().cloned().for_each(|c| out.push(c));
            assert_eq!(out.len(), expected.len());
            let mut w = Choppy {
                out: Vec::new(),
                step,
                calls: 0,
                block_every: 5,
            };
            let mut total = 0;
            while !out.is_empty() {
                total += out.write_to(&mut w).unwrap();
                assert_eq!(total + out.len(), expected.len());
            }
            assert_eq!(w.out, expected, "step {step}");
        }
    }

    #[test]
    fn would_block_returns_progress_and_keeps_the_rest() {
        let mut out = Output::default();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::from_static(b"world"));
        let mut w = Choppy {
            out: Vec::new(),
            step: 4,
            calls: 0,
            block_every: 3,
        };
        assert_eq!(out.write_to(&mut w).unwrap(), 8);
        assert_eq!(out.len(), 3);
        assert_eq!(w.out, b"hello wo");
    }

    #[test]
    fn the_backlog_is_what_waits_behind_the_chunk_being_written() {
        let mut out = Output::default();
        assert_eq!(out.backlog(), 0);
        out.push(Bytes::from(vec![1u8; 3000]));
        assert_eq!(out.backlog(), 0, "one chunk in progress is no backlog");
        out.push(Bytes::from(vec![2u8; 500]));
        out.push(Bytes::from(vec![3u8; 200]));
        assert_eq!(out.backlog(), 700 + 2 * CHUNK_COST);
        let mut sink = Choppy {
            out: Vec::new(),
            step: 3100,
            calls: 0,
            block_every: 2,
        };
        out.write_to(&mut sink).unwrap();
        // The first chunk is gone and the second is partly written: only the third waits.
        assert_eq!(out.len(), 600);
        assert_eq!(out.backlog(), 200 + CHUNK_COST);
    }

    #[test]
    fn the_footprint_counts_each_chunk_besides_its_bytes() {
        let mut out = Output::default();
        assert_eq!(out.footprint(), 0);
        for _ in 0..1000 {
            out.push(Bytes::from_static(b"tiny"));
        }
        out.push(Bytes::new()); // nothing queued, nothing counted
        assert_eq!(out.len(), 4000);
        assert_eq!(out.footprint(), 4000 + 1000 * CHUNK_COST);
    }

    #[test]
    fn write_zero_is_an_error() {
        let mut out = Output::default();
        out.push(Bytes::from_static(b"x"));
        let mut w = Choppy {
            out: Vec::new(),
            step: 0,
            calls: 0,
            block_every: 1000,
        };
        assert_eq!(
            out.write_to(&mut w).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
    }
}
