//! The stream transports behind one type: a [`Stream`] is a TCP, Unix-domain or TLS
//! connection, read and written as bytes, so a `Connection` never asks which one it
//! has. Also the listening sockets that make them ([`ListenSocket`]), the peer each
//! comes from ([`Peer`]), and the Unix socket file's life (a stale one replaced, a
//! live one or any other file refused, ours removed when the listener goes).
//!
//! It knows no framing and no service; TLS's own state machine is `tls`'s.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, SockAddr, Socket, Type};

#[cfg(feature = "tls")]
use super::tls::TlsStream;

/// Where a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A TCP (or TLS-over-TCP) peer's address.
    Ip(SocketAddr),
    /// A peer on a Unix-domain socket: the listener's path and, where the system
    /// says, the peer's process id (`SO_PEERCRED`). Unix peers have no address of
    /// their own, and access rules (`--allow`/`--deny`) do not apply to them.
    Unix {
        /// The path of the socket it connected to.
        path: Arc<Path>,
        /// The peer process's id, if known.
        pid: Option<u32>,
    },
}

impl Peer {
    /// The peer's IP address; `None` for a Unix peer.
    pub fn ip(&self) -> Option<IpAddr> {
        self.socket_addr().map(|a| a.ip())
    }

    /// The peer's IP address and port; `None` for a Unix peer.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Ip(addr) => Some(*addr),
            Peer::Unix { .. } => None,
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer::Ip(addr)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => write!(f, "{addr}"),
            Peer::Unix {
                path,
                pid: Some(pid),
            } => write!(f, "unix:{}[pid {pid}]", path.display()),
            Peer::Unix { path, pid: None } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connection's socket, of any stream transport.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
    /// TLS over TCP: reads and writes are plaintext; records go through rustls.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath (TCP and TLS), for TCP's options.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) => None,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Some(s.tcp()),
        }
    }

    /// Ends our sending side: TCP and Unix shut down their write half; TLS first sends
    /// close_notify and shuts the TCP write half once it is out.
    ///
    /// # Errors
    /// As `shutdown(2)`, or writing the TLS records.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.shutdown_write(),
        }
    }

    /// True while bytes accepted by a write are still to go out to the socket (TLS
    /// records that met a full socket): the connection needs `WRITABLE` and is not
    /// flushed yet. Always false for TCP and Unix, whose writes go to the kernel.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.wants_write(),
        }
    }

    /// Writes what [`Stream::wants_write`] says is pending, until done or the socket
    /// would block.
    ///
    /// # Errors
    /// Any write error but `WouldBlock` and `Interrupted`.
    pub fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => Ok(()),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.send_pending(),
        }
    }

    /// True while the transport's own handshake is under way (TLS): no plaintext yet.
    pub fn is_handshaking(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.is_handshaking(),
        }
    }

    /// True when a read that did not fill its buffer proves the socket drained, so the
    /// next edge-triggered event will come when more arrives: TCP and Unix always;
    /// TLS only when its read stopped at `WouldBlock` (not with plaintext or an end
    /// of stream still in hand).
    pub fn short_read_drains(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => true,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.short_read_drains(),
        }
    }

    /// Shuts down `how` at once, on the socket (TLS: the TCP socket, no close_notify).
    ///
    /// # Errors
    /// As `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.tcp().shutdown(how),
        }
    }

    /// True for a TLS connection.
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(_) => true,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.tcp().as_fd(),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interest),
            Stream::Unix(s) => s.register(registry, token, interest),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.tcp_mut().register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interest),
            Stream::Unix(s) => s.reregister(registry, token, interest),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.tcp_mut().reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.tcp_mut().deregister(registry),
        }
    }
}

/// A listening socket of any stream transport.
pub(super) enum ListenSocket {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix-domain socket and its file, removed when this is dropped.
    Unix(UnixListener, SocketFile),
    /// TCP whose connections speak TLS with this configuration.
    #[cfg(feature = "tls")]
    Tls(TcpListener, Arc<rustls::ServerConfig>),
}

impl ListenSocket {
    /// Accepts one connection.
    ///
    /// # Errors
    /// As `accept(2)` (`WouldBlock` when none is pending), or a TLS session that
    /// cannot be set up.
    pub(super) fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            ListenSocket::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Peer::Ip(a))),
            ListenSocket::Unix(l, file) => {
                let (stream, _) = l.accept()?;
                let pid = rustix::net::sockopt::socket_peercred(&stream)
                    .ok()
                    .and_then(|cred| u32::try_from(cred.pid.as_raw_nonzero().get()).ok());
                let peer = Peer::Unix {
                    path: Arc::clone(&file.path),
                    pid,
                };
                Ok((Stream::Unix(stream), peer))
            }
            #[cfg(feature = "tls")]
            ListenSocket::Tls(l, config) => {
                let (tcp, addr) = l.accept()?;
                let stream = TlsStream::server(tcp, Arc::clone(config))?;
                Ok((Stream::Tls(Box::new(stream)), Peer::Ip(addr)))
            }
        }
    }
}

impl Source for ListenSocket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.register(registry, token, interest),
            ListenSocket::Unix(l, _) => l.register(registry, token, interest),
            #[cfg(feature = "tls")]
            ListenSocket::Tls(l, _) => l.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.reregister(registry, token, interest),
            ListenSocket::Unix(l, _) => l.reregister(registry, token, interest),
            #[cfg(feature = "tls")]
            ListenSocket::Tls(l, _) => l.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.deregister(registry),
            ListenSocket::Unix(l, _) => l.deregister(registry),
            #[cfg(feature = "tls")]
            ListenSocket::Tls(l, _) => l.deregister(registry),
        }
    }
}

/// The socket file of a Unix listener: removed when dropped, if it is still the one
/// we made (same device and inode), so a file someone put there since is left alone.
#[derive(Debug)]
pub(super) struct SocketFile {
    /// Where it is.
    path: Arc<Path>,
    /// Its device and inode once bound.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("cannot remove {}: {e}", self.path.display());
                } else {
                    log::debug!("removed the socket file {}", self.path.display());
                }
            }
            _ => log::debug!(
                "{} is no longer our socket file: left alone",
                self.path.display()
            ),
        }
    }
}

/// A Unix listening socket at `path` with `backlog`, non-blocking. A stale socket file
/// (nothing accepts on it) is replaced; a live socket, a regular file, a directory or
/// anything else at `path` is refused and left as it was.
///
/// # Errors
/// `AddrInUse` for a live socket, `AlreadyExists` for a file that is no socket, or as
/// `bind(2)` and `listen(2)`, each with a message saying which.
pub(super) fn bind_unix(path: &Path, backlog: u32) -> io::Result<(UnixListener, SocketFile)> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "a server is listening on that socket (stop it, or choose another path)",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("{}: replacing a stale socket file", path.display());
                    std::fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(meta) => {
            let what = if meta.is_dir() {
                "a directory"
            } else if meta.is_file() {
                "a regular file"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file that is not a socket"
            };
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{what} is there, not a socket; it was left as it is"),
            ));
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let meta = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: Arc::from(path),
        id: (meta.dev(), meta.ino()),
    };
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    let listener = std::os::unix::net::UnixListener::from(socket);
    Ok((UnixListener::from_std(listener), file))
}

/// The path a Unix listener was asked for, made absolute for messages and the
/// start-up line (the daemon's working directory is not the reader's).
pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("framecast-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_stale_socket_is_replaced_and_ours_removed_on_drop() {
        let path = temp_path("stale.sock");
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves the file
        assert!(path.exists());
        let (listener, file) = bind_unix(&path, 8).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(listener);
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_a_file_and_a_directory_are_refused_untouched() {
        let live = temp_path("live.sock");
        let _ = std::fs::remove_file(&live);
        let _server = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let e = bind_unix(&live, 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        std::os::unix::net::UnixStream::connect(&live).unwrap();

        let file = temp_path("regular");
        std::fs::write(&file, b"keep me").unwrap();
        let e = bind_unix(&file, 8).unwrap_err();
        assert!(e.to_string().contains("a regular file"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let dir = temp_path("dir");
        std::fs::create_dir_all(&dir).unwrap();
        let e = bind_unix(&dir, 8).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(dir.is_dir());
    }

    #[test]
    fn a_file_put_in_place_of_ours_is_left_alone() {
        let path = temp_path("replaced.sock");
        let _ = std::fs::remove_file(&path);
        let (listener, file) = bind_unix(&path, 8).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        drop(listener);
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn peers_print_as_addresses_or_paths() {
        let ip = Peer::Ip("127.0.0.1:9".parse().unwrap());
        assert_eq!(ip.to_string(), "127.0.0.1:9");
        assert!(ip.ip().is_some());
        let unix = Peer::Unix {
            path: Arc::from(Path::new("/run/x.sock")),
            pid: Some(42),
        };
        assert_eq!(unix.to_string(), "unix:/run/x.sock[pid 42]");
        assert_eq!(unix.ip(), None);
    }
}
