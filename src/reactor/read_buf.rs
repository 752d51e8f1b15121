//! A connection's input buffer: received bytes waiting to be framed, plus room for the
//! next read. Frames leave it either written straight from it (echo) or as zero-copy
//! [`Bytes`] split off the front.
//!
//! Safe Rust cannot read into uninitialised memory, so room is zeroed once when it is
//! first made and then reused read after read: consumed bytes are only skipped over
//! (`start` moves), and the unconsumed tail is moved to the front when room runs short,
//! so a buffer whose bytes are written through is never zeroed again. Only bytes handed
//! out as `Bytes` leave for good, and the room that replaces them is zeroed anew.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};

/// Room made for the first read on a connection, in bytes: small, so idle connections
/// stay cheap (a connection holds no buffer at all until its first read).
pub const MIN_CHUNK: usize = 16 << 10;
/// Largest room made for ordinary reads, in bytes: reads that fill their room double
/// it up to this, so only a streaming connection gets this much. Four times tokio's
/// 64 KiB: at 256 frames in flight it saves 10-15% of the daemon's CPU per frame
/// (fewer, larger reads and writes), measured side by side. Frames larger than this
/// grow the buffer with the bytes that arrive.
pub const MAX_CHUNK: usize = 256 << 10;
/// A connection holding at most this many pending bytes reads through the reactor's
/// shared buffer ([`ReadBuf::lend`]) and keeps only what is left over, in a buffer of
/// its own sized to it, as Redis does with its shared query buffer: a connection that
/// sent one header byte costs one byte, not a 16 KiB read buffer. A connection with
/// more pending (a large frame on its way) keeps reading into its own buffer, so no
/// large frame is copied back and forth.
pub const LEND_MAX: usize = 4 << 10;
/// An empty buffer with more capacity than this (left by a large frame) is released.
const RELEASE_ABOVE: usize = 4 * MAX_CHUNK;
/// A `Bytes` split off the buffer keeps the buffer's whole allocation alive for as
/// long as it waits in some output queue. So only a run of at least 1/`PIN_RATIO` of
/// the allocation is split off without copying; a smaller one is copied out, and a few
/// bytes queued for a slow reader never pin a buffer of hundreds of KiB. Queued output
/// thus holds at most this many times its length in memory.
const PIN_RATIO: usize = 4;

/// Received bytes not yet framed, and room to receive more.
#[derive(Debug)]
pub struct ReadBuf {
    /// `buf[start..end]` are received bytes not yet consumed; `buf[..start]` were
    /// consumed; `buf[end..]` is room. All of it is initialised.
    buf: BytesMut,
    /// Where the unconsumed bytes begin.
    start: usize,
    /// Where the unconsumed bytes end and the room begins.
    end: usize,
    /// Room to make next time it runs out; doubles while reads fill it.
    chunk: usize,
    /// The most bytes ever worth holding: one pending frame plus one chunk.
    limit: usize,
    /// Bytes split off the front of `buf` since its allocation was made: with
    /// `buf.capacity()`, the size of that allocation.
    carved: usize,
}

impl ReadBuf {
    /// An empty buffer for a codec whose incomplete frames hold at most `max_pending` bytes.
    pub fn new(max_pending: usize) -> Self {
        ReadBuf {
            buf: BytesMut::new(),
            start: 0,
            end: 0,
            chunk: MIN_CHUNK,
            limit: max_pending.saturating_add(MAX_CHUNK),
            carved: 0,
        }
    }

    /// True when this connection should read through the shared buffer: it holds
    /// little (at most `LEND_MAX` bytes).
    pub fn wants_shared(&self) -> bool {
        self.end - self.start <= LEND_MAX
    }

    /// Puts `shared` (empty, the reactor's one shared buffer) in this buffer's place,
    /// holding this buffer's pending bytes; this buffer's own memory is let go.
    pub fn lend(&mut self, shared: &mut ReadBuf) {
        shared.start = 0;
        shared.end = 0;
        shared.limit = self.limit;
        shared.chunk = MAX_CHUNK;
        let pending = self.end - self.start;
        if shared.buf.len() < pending + MIN_CHUNK {
            shared.make_room();
        }
        if let (Some(dst), Some(src)) = (
            shared.buf.get_mut(..pending),
            self.buf.get(self.start..self.end),
        ) {
            dst.copy_from_slice(src);
            shared.end = pending;
        }
        std::mem::swap(self, shared);
        shared.drop_buffer();
    }

    /// Gives the shared buffer back into `shared` after [`ReadBuf::lend`], keeping a
    /// copy of the pending bytes in an allocation of exactly their size.
    pub fn give_back(&mut self, shared: &mut ReadBuf) {
        let kept = ReadBuf {
            buf: BytesMut::from(self.data()),
            start: 0,
            end: self.end - self.start,
            chunk: MIN_CHUNK,
            limit: self.limit,
            carved: 0,
        };
        *shared = std::mem::replace(self, kept);
        shared.start = 0;
        shared.end = 0;
        shared.release_if_oversized();
    }

    /// Received bytes not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// True when no received bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Reads once from `src` into the room, making room first if little is left.
    /// Returns how many bytes arrived (`0` is end of stream) and whether they filled the
    /// room: a read that did not had everything the source held at that moment.
    ///
    /// # Errors
    /// Whatever `src.read` reports, `WouldBlock` and `Interrupted` included.
    pub fn read_from<R: Read>(&mut self, src: &mut R) -> io::Result<(usize, bool)> {
        if self.buf.len() - self.end < self.chunk / 2 {
            self.make_room();
        }
        let room = &mut self.buf[self.end..];
        let full = room.len();
        let n = src.read(room)?.min(full);
        if n == full && self.chunk < MAX_CHUNK {
            self.chunk *= 2;
        }
        self.end += n;
        Ok((n, n == full))
    }

    /// Removes the first `n` unconsumed bytes and returns them: without copying (their
    /// memory now belongs to the `Bytes`) if they are a large enough share of the
    /// buffer, copied out otherwise (see `PIN_RATIO`).
    pub fn split(&mut self, n: usize) -> Bytes {
        let n = n.min(self.end - self.start);
        if n.saturating_mul(PIN_RATIO) < self.carved + self.buf.capacity() {
            let taken = Bytes::copy_from_slice(&self.buf[self.start..self.start + n]);
            self.discard(n);
            return taken;
        }
        self.carved += self.start + n;
        self.buf.advance(self.start);
        self.end -= self.start + n;
        self.start = 0;
        let taken = self.buf.split_to(n).freeze();
        self.release_if_oversized();
        taken
    }

    /// Consumes the first `n` unconsumed bytes; their room will be reused.
    pub fn discard(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.release_if_oversized();
        }
    }

    /// Drops the buffer if it holds no received bytes, for a connection gone quiet:
    /// its next read starts again from `MIN_CHUNK`. Returns the bytes of capacity let
    /// go (0 if there were none, or bytes are waiting).
    pub fn release_if_empty(&mut self) -> usize {
        let capacity = self.buf.capacity();
        if self.start != self.end || capacity == 0 {
            return 0;
        }
        self.drop_buffer();
        self.chunk = MIN_CHUNK;
        capacity
    }

    /// Once a large frame has left, drops the buffer that held it rather than keeping
    /// it for an ordinary stream.
    fn release_if_oversized(&mut self) {
        if self.start == self.end && self.buf.capacity() > RELEASE_ABOVE {
            self.drop_buffer();
        }
    }

    /// Lets the (empty) buffer's memory go; the next read makes new room.
    fn drop_buffer(&mut self) {
        self.buf = BytesMut::new();
        self.start = 0;
        self.end = 0;
        self.carved = 0;
    }

    /// Makes room after the unconsumed bytes: first by moving them to the front over
    /// consumed ones (a copy of less than a frame, no zeroing), otherwise by growing the
    /// buffer with zeroed room, in step with the bytes held so a large frame is
    /// assembled in O(its size) copies.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end >= self.chunk / 2 {
                return;
            }
        }
        self.buf.truncate(self.end);
        let ceiling = self.limit.saturating_sub(self.end).max(MIN_CHUNK);
        let want = self.chunk.max(self.end).min(ceiling);
        if self.buf.capacity() - self.end < want {
            // A new allocation of our own rather than `reserve`, which may keep the
            // prefix already split off in front of the bytes it moves: `buf` starts
            // at the beginning of its allocation, so `carved` is exactly 0.
            let mut grown = BytesMut::with_capacity(self.end + want);
            grown.extend_from_slice(&self.buf[..self.end]);
            self.buf = grown;
            self.carved = 0;
        }
        self.buf.resize(self.end + want, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `data` in pieces of at most `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn keeps_bytes_in_order_across_reads_and_splits() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut src = Trickle {
            data: &data,
            step: 7_001,
        };
        let mut buf = ReadBuf::new(1 << 20);
        let mut out = Vec::new();
        while buf.read_from(&mut src).unwrap().0 > 0 {
            let half = buf.data().len() / 2;
            out.extend_from_slice(&buf.split(half));
        }
        out.extend_from_slice(&buf.split(usize::MAX));
        assert_eq!(out, data);
        assert!(buf.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any reads, splits, discards and releases hand out every byte once, in order,
        /// and no run split off without a copy keeps more than `PIN_RATIO` times its
        /// length of allocation alive.
        #[test]
        fn any_reads_and_splits_keep_bytes_in_order_and_pins_bounded(
            steps in proptest::collection::vec((1usize..300_000, 0u8..4, 0usize..400_000), 1..40)
        ) {
            let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
            let mut src = Trickle { data: &data, step: 0 };
            let mut buf = ReadBuf::new(1 << 20);
            let mut out = Vec::new();
            for (step, op, amount) in steps {
                src.step = step;
                buf.read_from(&mut src).unwrap();
                match op {
                    0 | 1 => {
                        let front = buf.data().as_ptr();
                        let allocation = buf.carved + buf.buf.capacity();
                        let taken = buf.split(amount);
                        if !taken.is_empty() && taken.as_ptr() == front {
                            proptest::prop_assert!(taken.len() * PIN_RATIO >= allocation);
                        }
                        out.extend_from_slice(&taken);
                    }
                    2 => {
                        let n = amount.min(buf.data().len());
                        out.extend_from_slice(&buf.data()[..n]);
                        buf.discard(n);
                    }
                    _ => {
                        buf.release_if_empty();
                    }
                }
            }
            out.extend_from_slice(&buf.split(usize::MAX));
            let read = data.len() - src.data.len();
            proptest::prop_assert!(out == data[..read]);
        }
    }

    #[test]
    fn a_small_run_is_copied_out_and_a_large_one_split_off() {
        let data = vec![5u8; 3 << 20];
        let mut src = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut buf = ReadBuf::new(4 << 20);
        while buf.data().len() < data.len() {
            buf.read_from(&mut src).unwrap();
        }
        // A few bytes must not keep megabytes alive: they are copied.
        let front = buf.data().as_ptr();
        let small = buf.split(100);
        assert_ne!(small.as_ptr(), front);
        // A quarter of the allocation or more is split off where it lies.
        let allocation = buf.carved + buf.buf.capacity();
        let front = buf.data().as_ptr();
        let large = buf.split(allocation / 4);
        assert_eq!(large.as_ptr(), front);
        // What remains is a smaller share of the same allocation: copied again.
        let front = buf.data().as_ptr();
        assert_ne!(buf.split(allocation / 8).as_ptr(), front);
        assert_eq!(buf.carved + buf.buf.capacity(), allocation);
        let rest = buf.split(usize::MAX);
        assert_eq!(
            small.len() + large.len() + allocation / 8 + rest.len(),
            data.len()
        );
    }

    #[test]
    fn grows_to_hold_a_large_frame_then_lets_it_go() {
        let data = vec![9u8; 3 << 20];
        let mut src = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut buf = ReadBuf::new(4 << 20);
        while buf.data().len() < data.len() {
            assert!(buf.read_from(&mut src).unwrap().0 > 0);
        }
        assert!(
            buf.buf.capacity() <= 2 * buf.limit,
            "growth is bounded by the limit"
        );
        let frame = buf.split(data.len());
        assert_eq!(frame.len(), data.len());
        drop(frame);
        let mut more = Trickle {
            data: b"next",
            step: 4,
        };
        assert_eq!(buf.read_from(&mut more).unwrap(), (4, false));
        assert!(
            buf.buf.capacity() < 1 << 20,
            "the large buffer was released"
        );
    }

    #[test]
    fn an_empty_buffer_is_released_and_a_busy_one_kept() {
        let data = vec![5u8; 1 << 20];
        let mut src = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut buf = ReadBuf::new(8 << 20);
        for _ in 0..6 {
            buf.read_from(&mut src).unwrap();
            buf.discard(100);
        }
        assert_eq!(buf.release_if_empty(), 0, "bytes are waiting");
        assert!(!buf.data().is_empty());
        buf.discard(usize::MAX);
        assert!(buf.release_if_empty() >= MAX_CHUNK);
        assert_eq!((buf.buf.capacity(), buf.chunk), (0, MIN_CHUNK));
        assert_eq!(buf.release_if_empty(), 0, "nothing left to release");
        let mut more = Trickle {
            data: b"again",
            step: 5,
        };
        assert_eq!(buf.read_from(&mut more).unwrap(), (5, false));
        assert_eq!(buf.data(), b"again");
    }

    #[test]
    fn a_buffer_lent_the_shared_one_keeps_only_its_leftover() {
        let mut shared = ReadBuf::new(1 << 20);
        let mut own = ReadBuf::new(1 << 20);
        let mut src = Trickle {
            data: b"abc",
            step: 1,
        };
        own.read_from(&mut src).unwrap();
        assert!(own.wants_shared());
        own.lend(&mut shared);
        assert_eq!(own.data(), b"a", "pending bytes move with the loan");
        own.read_from(&mut src).unwrap();
        own.read_from(&mut src).unwrap();
        assert_eq!(own.data(), b"abc");
        assert!(
            own.buf.capacity() >= MAX_CHUNK / 2,
            "reads offer the shared room"
        );
        own.discard(1);
        own.give_back(&mut shared);
        assert_eq!(own.data(), b"bc");
        assert!(
            own.buf.capacity() < 64,
            "two pending bytes cost about two bytes, not {}",
            own.buf.capacity()
        );
        assert!(shared.is_empty() && shared.buf.capacity() >= MAX_CHUNK / 2);
        // Lent again, the leftover comes first and the shared room is reused.
        own.lend(&mut shared);
        assert_eq!(own.data(), b"bc");
        own.give_back(&mut shared);
        assert_eq!(own.data(), b"bc");
    }

    #[test]
    fn room_doubles_only_while_reads_fill_it() {
        let data = vec![1u8; 1 << 20];
        let mut src = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut buf = ReadBuf::new(8 << 20);
        for _ in 0..8 {
            buf.read_from(&mut src).unwrap();
            buf.discard(usize::MAX);
        }
        assert_eq!(buf.chunk, MAX_CHUNK);
        let mut small = ReadBuf::new(8 << 20);
        let mut src = Trickle {
            data: &data,
            step: 100,
        };
        for _ in 0..8 {
            small.read_from(&mut src).unwrap();
        }
        assert_eq!(small.chunk, MIN_CHUNK);
    }
}
