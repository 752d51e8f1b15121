//! `--workers N`: N reactors, each on a thread of its own and exactly the
//! single-threaded reactor of one worker, sharing nothing on the data path. Each binds
//! its own listening sockets with `SO_REUSEPORT`, so the kernel spreads connections
//! over them by a hash of the peer's address and port; a worker that dies closes its
//! sockets, and the kernel stops giving it connections.
//!
//! What the workers share, all off the data path: the [`StatsBoard`] (each worker
//! copies its counters there every [`PUBLISH_EVERY`]; the admin endpoint, served by
//! worker 0, shows their sum and a row per worker), the connection limit (split: each
//! worker takes its share of `max_connections`, as nginx's `worker_connections`), and
//! whatever a service wires between them through [`crate::reactor::mailbox`] (broadcast
//! does, so rooms span workers). A [`Handle`] per worker stops them; [`Workers::run`]
//! waits for all, and says which one failed or panicked while the others went on.
//!
//! [`PUBLISH_EVERY`]: crate::reactor::PUBLISH_EVERY

use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread;

use log::{error, info};

use crate::config::{Config, ConfigError};
use crate::listen::Listen;
use crate::reactor::{Notifier, StartError, StatsBoard, Stopped};
use crate::{Handle, Reactor, Service};

/// The most workers a daemon takes: each is a thread with its own poller and
/// listeners, and more than cores is only overhead.
pub const MAX_WORKERS: usize = 1024;

/// How one worker ended.
#[derive(Debug)]
pub enum WorkerEnd {
    /// Its reactor returned as a single reactor does.
    Stopped(Stopped),
    /// Its event loop failed (`poll` itself).
    Failed(io::Error),
    /// It panicked; the message, when it was text.
    Panicked(String),
    /// Its thread could not be started.
    NotStarted(io::Error),
}

impl WorkerEnd {
    /// True when the worker stopped because it was asked to and drained (or cut at
    /// the drain timeout): what a daemon exits 0 for.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            WorkerEnd::Stopped(Stopped::Drained | Stopped::DrainTimedOut { .. })
        )
    }
}

/// N bound reactors, ready to run.
pub struct Workers<S> {
    reactors: Vec<Reactor<S>>,
    board: Arc<StatsBoard>,
}

/// The number of workers `--workers 0` means: one per core this process may use.
pub fn per_core() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Worker `index`'s share of `max` connections among `workers`.
fn share(max: usize, workers: usize, index: usize) -> usize {
    max / workers + usize::from(index < max % workers)
}

impl<S: Service + Send + 'static> Workers<S> {
    /// Binds `workers` reactors on `config`'s addresses, each serving the service
    /// `make(i)` builds for worker `i`. Worker 0 binds first (learning the ports where
    /// port 0 was asked for) and alone serves the admin endpoint; the others bind the
    /// addresses it got. Each address is first bound once without `SO_REUSEPORT`, so
    /// an address already in use (by another daemon in a `SO_REUSEPORT` group of its
    /// own, even) is refused rather than shared.
    ///
    /// # Errors
    /// As [`Reactor::bind`]; [`StartError::Config`] for fewer connections allowed
    /// than workers, or no worker.
    pub fn bind(
        config: Config,
        workers: usize,
        mut make: impl FnMut(usize) -> S,
    ) -> Result<Workers<S>, StartError> {
        config.validate().map_err(StartError::Config)?;
        if workers == 0 || config.max_connections < workers {
            return Err(StartError::Config(ConfigError {
                field: "max_connections",
                problem: format!(
                    "{} connections cannot be shared by {workers} workers",
                    config.max_connections
                ),
            }));
        }
        // Each IP address once without SO_REUSEPORT, so one in use is refused (and a
        // port 0 becomes the port every worker binds). A Unix socket cannot be shared
        // that way: worker 0 alone listens on it (rooms span workers all the same).
        let mut listen = Vec::with_capacity(config.listen.len());
        for wanted in &config.listen {
            let bind_error = |source| StartError::Bind {
                addr: wanted.clone(),
                source,
            };
            listen.push(match wanted {
                Listen::Tcp(addr) | Listen::Tls(addr) => {
                    let probe = std::net::TcpListener::bind(addr).map_err(bind_error)?;
                    let real = probe.local_addr().map_err(bind_error)?;
                    match wanted {
                        Listen::Tls(_) => Listen::Tls(real),
                        _ => Listen::Tcp(real),
                    }
                }
                Listen::Udp(addr) => {
                    let probe = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
                    Listen::Udp(probe.local_addr().map_err(bind_error)?)
                }
                Listen::Unix(path) => Listen::Unix(path.clone()),
            });
        }
        let board = StatsBoard::new(workers);
        let mut reactors = Vec::with_capacity(workers);
        for index in 0..workers {
            let mut mine = config.clone();
            mine.reuse_port = true;
            mine.listen = listen.clone();
            mine.max_connections = share(config.max_connections, workers, index);
            if index > 0 {
                mine.admin = Vec::new();
                mine.listen.retain(|l| !matches!(l, Listen::Unix(_)));
            }
            let mut reactor = Reactor::bind(mine, make(index))?;
            reactor.share_stats(Arc::clone(&board), index);
            reactors.push(reactor);
        }
        Ok(Workers { reactors, board })
    }

    /// Every listener with its kind and real address (worker 0's: the others have
    /// the same, less the Unix sockets only worker 0 serves).
    pub fn listening(&self) -> Vec<Listen> {
        self.reactors
            .first()
            .map(Reactor::listening)
            .unwrap_or_default()
    }

    /// The bound IP addresses (every worker's are the same).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.reactors
            .first()
            .map(Reactor::local_addrs)
            .unwrap_or_default()
    }

    /// The admin endpoint's addresses (worker 0's).
    pub fn admin_addrs(&self) -> Vec<SocketAddr> {
        self.reactors
            .first()
            .map(Reactor::admin_addrs)
            .unwrap_or_default()
    }

    /// A handle per worker; a shutdown asked of each stops the daemon.
    pub fn handles(&self) -> Vec<Handle> {
        self.reactors.iter().map(Reactor::handle).collect()
    }

    /// A notifier per worker, in order, to wire services together.
    pub fn notifiers(&self) -> Vec<Notifier> {
        self.reactors.iter().map(Reactor::notifier).collect()
    }

    /// Each worker's service, in order, to wire them together before [`Workers::run`].
    pub fn services_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.reactors.iter_mut().map(Reactor::service_mut)
    }

    /// The board every worker's counters are copied to.
    pub fn board(&self) -> Arc<StatsBoard> {
        Arc::clone(&self.board)
    }

    /// Runs every worker on a thread of its own until all have stopped. A worker
    /// that fails or panics is logged at once (its sockets close with it, so the
    /// kernel gives its share of new connections to the others) while the others go
    /// on serving; its end is in the result, by worker.
    pub fn run(self) -> Vec<WorkerEnd> {
        let workers = self.reactors.len();
        let (tx, rx) = mpsc::channel();
        let mut ends: Vec<Option<WorkerEnd>> = (0..workers).map(|_| None).collect();
        for (index, mut reactor) in self.reactors.into_iter().enumerate() {
            let tx = tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    // The reactor is dropped inside, so a panic closes its sockets and
                    // its links to the other workers before the others hear of it.
                    let end = panic::catch_unwind(AssertUnwindSafe(move || reactor.run()));
                    let end = match end {
                        Ok(Ok(stopped)) => WorkerEnd::Stopped(stopped),
                        Ok(Err(e)) => WorkerEnd::Failed(e),
                        Err(payload) => WorkerEnd::Panicked(panic_text(payload.as_ref())),
                    };
                    let _ = tx.send((index, end));
                });
            if let Err(e) = spawned {
                error!("worker {index}: cannot start its thread: {e}");
                ends[index] = Some(WorkerEnd::NotStarted(e));
            }
        }
        drop(tx);
        let mut running = ends.iter().filter(|e| e.is_none()).count();
        while running > 0 {
            let Ok((index, end)) = rx.recv() else {
                break;
            };
            running -= 1;
            match &end {
                WorkerEnd::Stopped(_) => info!("worker {index}: stopped"),
                WorkerEnd::Failed(e) => error!(
                    "worker {index}: its event loop failed: {e}; {running} worker(s) still serving"
                ),
                WorkerEnd::Panicked(why) => error!(
                    "worker {index}: panicked ({why}); its connections are lost, {running} worker(s) still serving"
                ),
                WorkerEnd::NotStarted(_) => {}
            }
            if let Some(slot) = ends.get_mut(index) {
                *slot = Some(end);
            }
        }
        ends.into_iter()
            .map(|end| end.unwrap_or(WorkerEnd::Panicked("lost".into())))
            .collect()
    }
}

/// A panic's message, when it was a string.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_is_split_without_losing_any() {
        assert_eq!(
            (0..3).map(|i| share(10, 3, i)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!((0..4).map(|i| share(10_000, 4, i)).sum::<usize>(), 10_000);
    }
}
