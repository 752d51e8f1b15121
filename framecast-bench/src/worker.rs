//! One event-loop thread: a [`mio::Poll`] owning a share of the connections. It decides
//! *when* each connection sends (keep `depth` in flight, follow the open-loop schedule,
//! stay within a broadcast window), reads and verifies what comes back, and stops
//! sending at the end of the run, then drains. Frames, bytes and latencies are counted
//! into its own [`Stats`]; the only state shared with other threads is the
//! [`Progress`] counters and, in broadcast, the [`Board`].
//!
//! Cost per frame is what makes a load generator honest, so the hot path allocates
//! nothing, reads the clock once per read call (not per frame) and once per send batch,
//! issues one `write` per batch of frames, and skips the `WouldBlock` syscall after a
//! short read or write.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::{Events, Poll, Token, Waker};

use super::config::{Load, SizeRange};
use super::conn::{Closed, Conn, ReadEnd, Role};
use super::pacer::{Pacer, Schedule};
use super::payload::Pattern;
use super::stats::{Progress, Stats};
use super::{DRAIN, DRAIN_STEP, MAX_DRAIN};
use framecast::codec::Codec;

/// Token of the thread's waker, outside the connection indices.
pub const WAKER: Token = Token(usize::MAX);
/// Token of the thread's open-loop timer, outside the connection indices.
pub const PACER: Token = Token(usize::MAX - 1);
/// Size of a thread's shared read buffer, in bytes: large reads amortise the syscall
/// over many frames when the server streams.
pub const READ_BUFFER: usize = 256 << 10;
/// Bytes read from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 1 << 20;
/// Output a sending connection may queue before it waits for `WRITABLE`: in the open
/// loop, before its schedule waits (the frames are still sent late, stamped with their
/// intended time, so latency stays honest); in a broadcast window, before the rest of
/// the window is encoded.
const MAX_QUEUED: usize = 4 << 20;
/// Bytes of frames generated before they are written: small enough to stay in cache,
/// large enough that one `write` carries many frames.
const STAGING: usize = 64 << 10;
/// Events taken from one poll call.
const EVENTS: usize = 1024;
/// Broadcast with several threads: how long a publisher blocked by its window waits
/// at most before it looks again, should a wake-up be missed.
const WINDOW_RECHECK: Duration = Duration::from_millis(10);
/// "No receiver in this thread has heard from this publisher yet."
const NO_ACK: u64 = u64::MAX;
/// Longest a thread blocks while sending, so it sees an interruption (a cut-off the
/// main thread sets) soon even when no event comes.
const CUT_CHECK: Duration = Duration::from_millis(100);
/// [`Plan::cut`] when the run was not interrupted.
pub const NOT_CUT: u64 = u64::MAX;

/// What every thread of a run shares read-only.
pub struct Plan {
    /// Builds frames.
    pub encoder: Codec,
    /// Cuts what comes back (for `raw`, into fixed-size messages).
    pub decoder: Codec,
    /// Filler bytes.
    pub pattern: Pattern,
    /// With `raw` and `fixed:N` framing, the message size: such streams carry no
    /// boundaries of their own, so after bytes go missing a connection hunts for the
    /// next payload that verifies rather than cut every later message in the wrong place.
    pub realign: Option<usize>,
    /// Payload sizes.
    pub size: SizeRange,
    /// Closed or open loop.
    pub load: Load,
    /// Broadcast publishers (ids `0..publishers`); 0 in echo.
    pub publishers: usize,
    /// Seed of the size generators.
    pub seed: u64,
    /// Event-loop threads.
    pub threads: usize,
    /// Time zero: payload stamps count nanoseconds from here.
    pub epoch: Instant,
    /// End of the warmup: counting starts.
    pub warm_end: Instant,
    /// End of the measured window as planned: sending stops, unless cut earlier.
    pub planned_end: Instant,
    /// When the run was interrupted (Ctrl-C), in ns from the epoch; [`NOT_CUT`] until
    /// then. The main thread sets it, every thread reads it: the end moves there.
    pub cut: AtomicU64,
}

impl Plan {
    /// Nanoseconds from the epoch to `at`.
    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Ends the run at `at` (if that is before the planned end): sending stops, and
    /// frames that arrive later no longer count.
    pub fn cut_at(&self, at: Instant) {
        self.cut.fetch_min(self.ns(at), Ordering::Relaxed);
    }

    /// Whether the run was interrupted before its planned end.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed) != NOT_CUT
    }

    /// End of the measured window: the planned end, or the cut-off if earlier.
    pub fn end(&self) -> Instant {
        match self.cut.load(Ordering::Relaxed) {
            NOT_CUT => self.planned_end,
            ns => self.planned_end.min(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// Last moment to wait for frames in flight, however they trickle in.
    pub fn drain_limit(&self) -> Instant {
        self.end() + MAX_DRAIN
    }

    /// True between the end of the warmup and the end of the run.
    pub fn is_measuring(&self, now: Instant) -> bool {
        now >= self.warm_end && now < self.end()
    }

    /// Open loop: the latest due time (ns from the epoch) a pass at `now` sends, with
    /// the timer `lead` ns early: ahead by the lead, but never past the end (nothing
    /// due after it goes out), and never behind `now`.
    pub fn horizon(&self, now: u64, lead: u64) -> u64 {
        now.saturating_add(lead)
            .min(self.ns(self.end()).saturating_sub(1))
            .max(now)
    }

    /// The stamps (ns from the epoch) of frames whose latency counts: those sent (in
    /// the open loop: the earlier of due and sent) between the end of the warmup and
    /// the end of the run.
    pub fn stamp_window(&self) -> std::ops::Range<u64> {
        self.ns(self.warm_end)..self.ns(self.end())
    }
}

/// Broadcast flow control across threads: how far each publisher's frames have got.
pub struct Board {
    /// Publishers.
    publishers: usize,
    /// `acked[t * publishers + p]`: frames of publisher `p` that every receiver of
    /// thread `t` has (the lowest "next expected"), or [`NO_ACK`].
    acked: Vec<AtomicU64>,
    /// Frames each publisher has sent; final once every thread has stopped sending.
    sent: Vec<AtomicU64>,
    /// Threads that have stopped sending.
    stopped: AtomicUsize,
    /// Thread `t` has a publisher blocked by its window and wants a wake-up.
    waiting: Vec<AtomicBool>,
    /// Each thread's waker.
    wakers: Vec<Waker>,
}

impl Board {
    /// A board for `publishers` publishers and one waker per thread.
    pub fn new(publishers: usize, wakers: Vec<Waker>) -> Board {
        let threads = wakers.len();
        Board {
            publishers,
            acked: (0..threads * publishers)
                .map(|_| AtomicU64::new(NO_ACK))
                .collect(),
            sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            stopped: AtomicUsize::new(0),
            waiting: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            wakers,
        }
    }

    /// Frames of publisher `p` that every receiver has, as far as is known; 0 while no
    /// receiver has heard from it.
    fn delivered(&self, p: usize) -> u64 {
        let lowest = (0..self.wakers.len())
            .map(|t| self.acked[t * self.publishers + p].load(Ordering::Acquire))
            .min()
            .unwrap_or(NO_ACK);
        if lowest == NO_ACK {
            0
        } else {
            lowest
        }
    }
}

/// What a thread hands back when it is done.
pub struct Outcome {
    /// Its figures.
    pub stats: Stats,
    /// Why its first connection closed early, if one did.
    pub first_close: Option<String>,
    /// When its last connection closed, if all did before the end of the run.
    pub all_closed_at: Option<Instant>,
}

/// One event-loop thread and the connections it owns.
pub struct Worker {
    /// This thread's index.
    index: usize,
    /// Its poller.
    poll: Poll,
    /// Its connections; a connection's token is its index.
    conns: Vec<Conn>,
    /// The run's plan.
    plan: Arc<Plan>,
    /// Every thread's progress counters; this thread writes `progress[index]`.
    progress: Arc<Vec<Progress>>,
    /// Broadcast flow control, `None` in echo.
    board: Option<Arc<Board>>,
    /// This thread's figures.
    stats: Stats,
    /// The read buffer every connection of the thread reads into.
    buffer: Vec<u8>,
    /// Where closed-loop frames are generated and written from.
    staging: BytesMut,
    /// Connections stopped by their read budget, to read again before blocking.
    still_ready: Vec<usize>,
    /// Connections still open.
    open: usize,
    /// Why the first connection closed early.
    first_close: Option<String>,
    /// A broadcast receiver advanced since the board was last updated.
    acks_dirty: bool,
    /// Whether this thread has stopped sending.
    stopped: bool,
    /// Open loop: which connection sends next, and when.
    schedule: Option<Schedule>,
    /// Open loop: the timer that wakes the thread when the next frame is due.
    pacer: Option<Pacer>,
    /// Closed-loop echo: the first window has been started (the rest follows through
    /// `top_up`).
    kicked: bool,
}

impl Worker {
    /// A worker over `conns`, whose tokens are their indices and which are not yet
    /// registered with `poll`; in the open loop, `pacer` is its timer, registered
    /// with `poll` as [`PACER`].
    pub fn new(
        index: usize,
        poll: Poll,
        conns: Vec<Conn>,
        plan: Arc<Plan>,
        progress: Arc<Vec<Progress>>,
        board: Option<Arc<Board>>,
        pacer: Option<Pacer>,
    ) -> Worker {
        let schedule = match plan.load {
            Load::Open { .. } => {
                let senders = conns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.role.sends())
                    .map(|(i, c)| (c.schedule.0, i))
                    .collect();
                let interval = conns.first().map_or(0.0, |c| c.schedule.1);
                Some(Schedule::new(senders, interval))
            }
            Load::Closed { .. } => None,
        };
        Worker {
            index,
            poll,
            open: conns.len(),
            conns,
            plan,
            progress,
            board,
            stats: Stats::new(),
            buffer: vec![0; READ_BUFFER],
            staging: BytesMut::with_capacity(2 * STAGING),
            still_ready: Vec::new(),
            first_close: None,
            acks_dirty: false,
            stopped: false,
            schedule,
            pacer,
            kicked: false,
        }
    }

    /// Runs until the drain ends or every connection has closed.
    pub fn run(mut self) -> Outcome {
        let mut all_closed_at = None;
        for i in 0..self.conns.len() {
            if let Err(e) = self.conns[i].register(self.poll.registry()) {
                self.close(i, Closed::Io(format!("cannot register: {e}")));
            }
        }
        self.progress()
            .up
            .store(self.open as u64, Ordering::Relaxed);
        let plan = Arc::clone(&self.plan);
        let mut events = Events::with_capacity(EVENTS);
        let mut spare = Vec::new();
        // Drain bookkeeping: frames seen at the last turn, when that turn was, and how
        // long (in running time) nothing has arrived since the end.
        let mut seen = 0;
        let mut last_turn = Instant::now();
        let mut quiet = Duration::ZERO;
        self.send(Instant::now());
        loop {
            let now = Instant::now();
            let end = plan.end();
            if now >= end && !self.stopped {
                self.stop();
            }
            if self.open == 0 {
                if now < end {
                    all_closed_at = Some(now);
                }
                break;
            }
            if self.stopped {
                if self.stats.frames_total != seen {
                    quiet = Duration::ZERO;
                } else {
                    quiet += now.saturating_duration_since(last_turn).min(DRAIN_STEP);
                }
                if self.is_drained() || quiet >= DRAIN || now >= plan.drain_limit() {
                    break;
                }
            }
            seen = self.stats.frames_total;
            last_turn = now;
            let timeout = self.timeout(now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close_all(&format!("poll failed: {e}"));
                    continue;
                }
            }
            let woke = Instant::now();
            let measuring = plan.is_measuring(woke);
            for event in events.iter() {
                if event.token() == PACER {
                    if let Some(pacer) = &mut self.pacer {
                        pacer.fired(plan.ns(woke));
                    }
                    continue; // what is due is sent after the events
                }
                let i = event.token().0;
                if event.token() == WAKER || i >= self.conns.len() || !self.conns[i].open {
                    continue; // a wake-up, or a spurious event for a closed connection
                }
                if event.is_read_closed() || event.is_error() {
                    self.conns[i].mark_read_closed();
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(i, measuring);
                }
                if event.is_writable() && self.conns[i].open {
                    self.flush(i);
                    if self.schedule.is_some() {
                        // Frames held back by a full queue, sent late with their stamps.
                        self.catch_up(i, 0);
                    } else if self.conns[i].open && self.conns[i].queued() == 0 {
                        self.top_up(i, measuring);
                    }
                }
            }
            let mut again = std::mem::replace(&mut self.still_ready, spare);
            for i in again.drain(..) {
                if self.conns[i].open {
                    self.on_readable(i, measuring);
                }
            }
            spare = again;
            self.update_board();
            self.send(Instant::now());
        }
        if !self.stopped {
            self.stop();
        }
        self.stats.timer_lead = self.pacer.as_ref().map_or(0, Pacer::lead);
        self.count_unanswered();
        let registry = self.poll.registry();
        for conn in &mut self.conns {
            conn.close(registry);
        }
        self.progress().up.store(0, Ordering::Relaxed);
        Outcome {
            stats: self.stats,
            first_close: self.first_close,
            all_closed_at,
        }
    }

    fn progress(&self) -> &Progress {
        &self.progress[self.index]
    }

    /// How long to block: not at all while connections are still readable, until the
    /// next phase change otherwise. Open-loop send times are the [`Pacer`]'s: its
    /// timer wakes the poll with microsecond precision, which a timeout in whole
    /// milliseconds cannot.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.still_ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let plan = &self.plan;
        let mut deadline = if self.stopped {
            (now + DRAIN_STEP).min(plan.drain_limit())
        } else {
            plan.end().min(now + CUT_CHECK)
        };
        if now < plan.warm_end {
            deadline = deadline.min(plan.warm_end);
        }
        let mut wait = deadline.saturating_duration_since(now);
        if let Some(board) = &self.board {
            if board.waiting[self.index].load(Ordering::Relaxed) {
                wait = wait.min(WINDOW_RECHECK);
            }
        }
        Some(wait)
    }

    /// Reads a ready connection, then tops up its pipeline (echo, closed loop).
    fn on_readable(&mut self, i: usize, measuring: bool) {
        let plan = Arc::clone(&self.plan);
        let epoch = plan.epoch;
        let mut clock = || epoch.elapsed().as_nanos() as u64;
        let conn = &mut self.conns[i];
        let end = conn.read(
            &mut self.buffer,
            &plan,
            &mut self.stats,
            measuring,
            READ_BUDGET,
            &mut clock,
        );
        let progress = &self.progress[self.index];
        progress
            .frames
            .store(self.stats.frames_total, Ordering::Relaxed);
        progress
            .bytes
            .store(self.stats.bytes_total, Ordering::Relaxed);
        progress
            .errors
            .store(self.stats.errors(), Ordering::Relaxed);
        match end {
            ReadEnd::Drained => {}
            ReadEnd::Budget => self.still_ready.push(i),
            ReadEnd::Closed(why) => {
                self.close(i, why);
                return;
            }
        }
        if self.conns[i].role != Role::Echo {
            self.acks_dirty = true;
            return;
        }
        self.top_up(i, measuring);
    }

    /// Closed-loop echo: brings connection `i` back to `depth` frames in flight, then
    /// writes. Only with nothing queued: a queue means the socket is full, and frames
    /// generated now would wait in it (and be copied forward as it drains), so the
    /// WRITABLE event that empties it tops up instead, with a fresher stamp.
    fn top_up(&mut self, i: usize, measuring: bool) {
        let conn = &self.conns[i];
        let mut want = match self.plan.load {
            Load::Closed { depth } if !self.stopped && conn.role == Role::Echo => {
                (depth as u64).saturating_sub(conn.in_flight())
            }
            _ => 0,
        };
        if want == 0 || conn.queued() > 0 {
            if conn.queued() > 0 {
                self.flush(i);
            }
            return;
        }
        let plan = Arc::clone(&self.plan);
        let stamp = plan.ns(Instant::now());
        let mut staging = std::mem::take(&mut self.staging);
        while want > 0 {
            // Batches of at most STAGING bytes, written from the same few cache-warm
            // bytes each time rather than from per-connection buffers.
            while want > 0 && staging.len() < STAGING {
                let n = self.conns[i].encode_frame(&plan, stamp, &mut staging);
                want -= 1;
                if measuring {
                    self.stats.frames_sent += 1;
                    self.stats.bytes_sent += n as u64;
                }
            }
            let sent = self.conns[i].send_staged(self.poll.registry(), &staging);
            staging.clear();
            if let Err(e) = sent {
                self.close(i, closed_by(e));
                break;
            }
            if self.conns[i].queued() > 0 {
                break; // the socket is full; WRITABLE continues from here
            }
        }
        self.staging = staging;
    }

    /// Encodes one frame on connection `i`, counting it if inside the window.
    fn push(&mut self, i: usize, stamp: u64, measuring: bool) {
        let n = self.conns[i].push_frame(&self.plan, stamp);
        if measuring {
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += n as u64;
        }
    }

    /// Sends what is due: the first window of every closed-loop echo connection (the
    /// replies top it up), open-loop frames whose time has come, broadcast frames the
    /// window allows.
    fn send(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let plan = Arc::clone(&self.plan);
        let now_ns = plan.ns(now);
        let measuring = plan.is_measuring(now);
        match plan.load {
            Load::Closed { .. } if self.board.is_none() => {
                if std::mem::replace(&mut self.kicked, true) {
                    return;
                }
                // The first window takes the same path as every later top-up, one
                // staging batch at a time until the socket is full (WRITABLE goes on
                // from there): connections x depth x size encoded at once could take
                // gigabytes.
                for i in 0..self.conns.len() {
                    if self.conns[i].open {
                        self.top_up(i, measuring);
                    }
                }
            }
            Load::Closed { depth } => self.publish_window(depth as u64, now_ns, measuring),
            Load::Open { .. } => self.send_scheduled(),
        }
    }

    /// Broadcast, closed loop: each publisher sends while it is less than `depth`
    /// frames ahead of its slowest receiver.
    fn publish_window(&mut self, depth: u64, now_ns: u64, measuring: bool) {
        let Some(board) = self.board.clone() else {
            return;
        };
        let mut blocked = false;
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if !conn.open || conn.role != Role::Publisher {
                continue;
            }
            let p = conn.id as usize;
            let mut limit = board.delivered(p).saturating_add(depth);
            if conn.sent >= limit && self.plan.threads > 1 {
                // Ask for a wake-up, then look again in case the receivers moved on
                // in between.
                board.waiting[self.index].store(true, Ordering::SeqCst);
                limit = board.delivered(p).saturating_add(depth);
                blocked |= conn.sent >= limit;
            }
            // Bounded like the open loop's queue: a full socket's WRITABLE event brings
            // the loop back here for the rest of the window.
            while self.conns[i].sent < limit && self.conns[i].queued() < MAX_QUEUED {
                self.push(i, now_ns, measuring);
            }
            board.sent[p].store(self.conns[i].sent, Ordering::Release);
            if self.conns[i].queued() > 0 {
                self.flush(i);
            }
        }
        if !blocked {
            board.waiting[self.index].store(false, Ordering::Relaxed);
        }
    }

    /// Open loop: sends every frame whose intended time has come, walking the
    /// schedule from frame to frame (a pass costs the frames due, not the
    /// connections), then arms the timer for the next one.
    fn send_scheduled(&mut self) {
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        // A pass sends what falls due within the timer's lead: the thread was woken
        // that much early, because its wake-ups come that much late.
        let lead = self.pacer.as_ref().map_or(0, Pacer::lead);
        let mut now = self.plan.ns(Instant::now());
        while let Some((due, i)) = schedule.peek() {
            if due > self.plan.horizon(now, lead) {
                // Frames that fell due during the pass go out in it too.
                now = self.plan.ns(Instant::now());
                if due > self.plan.horizon(now, lead) {
                    break;
                }
            }
            self.catch_up(i, lead);
            schedule.advance();
        }
        let next = schedule.peek();
        self.schedule = Some(schedule);
        if let (Some(pacer), Some((due, _))) = (&mut self.pacer, next) {
            if let Err(e) = pacer.arm(due) {
                self.close_all(&format!("cannot arm the send timer: {e}"));
            }
        }
    }

    /// Open loop: sends connection `i`'s frames due by `lead` ns from now (more than
    /// one only when it was held back by a full queue), and counts how far from its
    /// intended time each goes out. A frame's latency counts from the earlier of its
    /// intended and its actual send time: from the intended one when it goes out late
    /// (coordinated omission corrected), from the actual one when early, so neither
    /// hides any of the round trip.
    fn catch_up(&mut self, i: usize, lead: u64) {
        let plan = Arc::clone(&self.plan);
        let (offset, interval) = self.conns[i].schedule;
        // The moment of the write that follows: the actual send time.
        let now = plan.ns(Instant::now());
        let horizon = plan.horizon(now, lead);
        loop {
            let conn = &self.conns[i];
            if !conn.open || self.stopped || conn.queued() >= MAX_QUEUED {
                break; // closed, done, or behind: WRITABLE brings the loop back here
            }
            let due = (offset + conn.sent as f64 * interval) as u64;
            if due > horizon {
                break;
            }
            // Counted in the window by its stamp, as its reply will be.
            let stamp = due.min(now);
            let measuring = plan.is_measuring(plan.epoch + Duration::from_nanos(stamp));
            self.push(i, stamp, measuring);
            if measuring {
                self.stats.record_pacing(now, due);
            }
        }
        if !self.conns[i].open {
            return;
        }
        if let Some(board) = &self.board {
            let conn = &self.conns[i];
            board.sent[conn.id as usize].store(conn.sent, Ordering::Release);
        }
        if self.conns[i].queued() > 0 {
            self.flush(i);
        }
    }

    /// Writes connection `i`'s output; closes it on error.
    fn flush(&mut self, i: usize) {
        if let Err(e) = self.conns[i].flush(self.poll.registry()) {
            self.close(i, closed_by(e));
        }
    }

    /// Publishes how far this thread's broadcast receivers have got, and wakes the
    /// threads whose publishers wait for that.
    fn update_board(&mut self) {
        let Some(board) = self.board.clone() else {
            return;
        };
        if !std::mem::take(&mut self.acks_dirty) {
            return;
        }
        let mut moved = false;
        for p in 0..board.publishers {
            let lowest = self
                .conns
                .iter()
                .filter(|c| c.open && c.role != Role::Echo)
                .filter_map(|c| c.sources.get(p).and_then(|w| w.next()))
                .min()
                .unwrap_or(NO_ACK);
            let slot = &board.acked[self.index * board.publishers + p];
            if slot.swap(lowest, Ordering::AcqRel) != lowest {
                moved = true;
            }
        }
        if moved {
            for (t, waiting) in board.waiting.iter().enumerate() {
                if t != self.index && waiting.swap(false, Ordering::SeqCst) {
                    let _ = board.wakers[t].wake();
                }
            }
        }
    }

    /// Stops sending: the end of the run has come.
    fn stop(&mut self) {
        self.stopped = true;
        if let Some(board) = &self.board {
            for conn in &self.conns {
                if conn.role == Role::Publisher {
                    board.sent[conn.id as usize].store(conn.sent, Ordering::Release);
                }
            }
            board.stopped.fetch_add(1, Ordering::AcqRel);
            for waker in &board.wakers {
                let _ = waker.wake();
            }
        }
    }

    /// True when nothing more is expected: every echo frame answered, every broadcast
    /// receiver holding every frame its publishers sent.
    fn is_drained(&self) -> bool {
        let output_done = self.conns.iter().all(|c| !c.open || c.queued() == 0);
        if !output_done {
            return false;
        }
        match &self.board {
            None => self.conns.iter().all(|c| !c.open || c.in_flight() == 0),
            Some(board) => {
                if board.stopped.load(Ordering::Acquire) < self.plan.threads {
                    return false;
                }
                self.missing(board) == 0
            }
        }
    }

    /// Broadcast frames sent that this thread's open receivers have not received.
    fn missing(&self, board: &Board) -> u64 {
        let mut missing = 0;
        for conn in self.conns.iter().filter(|c| c.open && c.role != Role::Echo) {
            for (p, window) in conn.sources.iter().enumerate() {
                let sent = board.sent[p].load(Ordering::Acquire);
                missing += match window.next() {
                    Some(next) => sent.saturating_sub(next),
                    // A publisher's own frames do not come back to it.
                    None if p == conn.id as usize => 0,
                    None => sent,
                };
            }
        }
        missing
    }

    /// Counts frames never answered, at the end of the drain.
    fn count_unanswered(&mut self) {
        let unanswered = match &self.board {
            None => self
                .conns
                .iter()
                .filter(|c| c.open)
                .map(Conn::in_flight)
                .sum(),
            Some(board) => self.missing(board),
        };
        self.stats.integrity.unanswered += unanswered;
    }

    /// Closes connection `i` early, counting why.
    fn close(&mut self, i: usize, why: Closed) {
        let conn = &mut self.conns[i];
        if !conn.open {
            return;
        }
        conn.close(self.poll.registry());
        self.open -= 1;
        let text = match why {
            Closed::ByServer(text) => {
                self.stats.connections.closed += 1;
                format!("closed by the server: {text}")
            }
            Closed::Io(text) => {
                self.stats.connections.io += 1;
                text
            }
            // Counted as a corrupted frame already.
            Closed::Framing(text) => format!("broke the framing: {text}"),
        };
        if self.first_close.is_none() {
            self.first_close = Some(format!("connection {}: {text}", self.conns[i].id));
        }
        let progress = &self.progress[self.index];
        progress.up.store(self.open as u64, Ordering::Relaxed);
        progress
            .errors
            .store(self.stats.errors(), Ordering::Relaxed);
    }

    /// Closes every connection after a failure of the thread's poller.
    fn close_all(&mut self, why: &str) {
        for i in 0..self.conns.len() {
            self.close(i, Closed::Io(why.to_owned()));
        }
    }
}

/// Why a write error closes a connection: the server's doing, or another I/O error.
fn closed_by(e: io::Error) -> Closed {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            Closed::ByServer(e.to_string())
        }
        _ => Closed::Io(e.to_string()),
    }
}
