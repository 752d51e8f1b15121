//! TLS over a non-blocking TCP socket with rustls's sans-IO `ServerConnection`: the
//! reactor reads and writes plaintext through [`TlsStream`] as through any stream, and
//! this module moves records (`read_tls`, `process_new_packets`, `write_tls`) without
//! ever blocking. The handshake happens in the same reads and writes, in the same
//! `Poll`; its deadline is the reactor's (`Expiry::Handshake`).
//!
//! Also the server configuration, loaded once from PEM files (certificate chain,
//! private key, and for mutual TLS the CA that client certificates must chain to),
//! with errors that name the file at fault, and a client's ([`client_config`]), so the
//! bench and the client drive their sessions with the same [`TlsStream`]. It knows
//! nothing of framing or services.

use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, Connection, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection,
    SignatureScheme,
};

use super::{interrupted, would_block};
use crate::config::TlsFiles;

/// What rustls may hold for one connection in each direction (plaintext written
/// before the handshake ends, records not yet taken by the socket): bounds a TLS
/// connection's memory beside its output cap.
const TLS_BUFFER: usize = 64 << 10;

/// A certificate, key or CA file that cannot be used: which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault.
    pub file: std::path::PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.problem)
    }
}

impl std::error::Error for TlsError {}

/// Reads `path` whole.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        file: path.to_path_buf(),
        problem: format!("cannot read it: {e}"),
    })
}

/// The certificates in the PEM file at `path`, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let fail = |problem: String| TlsError {
        file: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The server's TLS configuration from `files`: its certificate chain and key, and
/// with `client_ca` a verifier that requires client certificates signed by that CA.
///
/// # Errors
/// A [`TlsError`] naming the file that cannot be read or parsed, a key that does not
/// match the certificate, or a CA that cannot verify.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = certificates(&files.cert)?;
    let key_pem = read(&files.key)?;
    let key_error = |problem: String| TlsError {
        file: files.key.clone(),
        problem,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_error(format!("no usable PEM private key in it: {e}")))?;
    // ring: pure Rust and assembly, no C toolchain or OpenSSL. rustls 0.23.48 marks
    // it deprecated for lacking post-quantum key exchange (aws-lc-rs has it, at the
    // cost of a C build); the suites it offers are the usual TLS 1.2 and 1.3 ones.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| key_error(format!("no TLS version to offer: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| TlsError {
                    file: ca.clone(),
                    problem: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError {
                    file: ca.clone(),
                    problem: format!("cannot verify clients with it: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_error(format!(
            "the key does not match the certificate in {}",
            files.cert.display()
        )),
        e => key_error(format!("cannot use the key: {e}")),
    })?;
    Ok(Arc::new(config))
}

/// A client configuration with the ring provider: trusting the CA certificates in
/// the PEM file `ca`, or with `None` trusting any server (no verification at all:
/// for benchmarks against a self-signed certificate, never for real traffic).
///
/// # Errors
/// A [`TlsError`] naming the CA file that cannot be read or used.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    #[allow(deprecated)] // see `server_config`
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fail = |problem: String| TlsError {
        file: ca.map(Path::to_path_buf).unwrap_or_default(),
        problem,
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("no TLS version to offer: {e}")))?;
    let config = match ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A verifier that accepts every server certificate (it still checks the handshake's
/// signatures, so the session is a real one, just with nobody vouching for the key).
#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection: a TCP socket and the rustls session over it (a server's, or a
/// client's).
#[derive(Debug)]
pub struct TlsStream {
    /// The socket, non-blocking.
    tcp: TcpStream,
    /// The session: records in, plaintext out, and the reverse.
    tls: Connection,
    /// The TCP stream has ended (a read of zero).
    tcp_eof: bool,
    /// The last read stopped at `WouldBlock`: nothing more until the next event.
    drained: bool,
    /// Our side is closing: close_notify is queued, and the TCP write half goes once
    /// every record is out.
    closing: bool,
    /// The TCP write half is shut.
    shut: bool,
}

impl TlsStream {
    /// A server session on an accepted socket.
    ///
    /// # Errors
    /// If rustls cannot start a session with `config`.
    pub fn server(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream::new(tcp, tls))
    }

    /// A stream over `tcp` (non-blocking) for a session in any state: a client's
    /// whose handshake was done before, say.
    pub fn new(tcp: TcpStream, tls: impl Into<Connection>) -> TlsStream {
        let mut tls = tls.into();
        tls.set_buffer_limit(Some(TLS_BUFFER));
        TlsStream {
            tcp,
            tls,
            tcp_eof: false,
            drained: false,
            closing: false,
            shut: false,
        }
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The socket, to register it.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The negotiated version and cipher suite, for the log.
    pub fn describe(&self) -> String {
        let version = self
            .tls
            .protocol_version()
            .map_or_else(|| "?".to_owned(), |v| format!("{v:?}"));
        let suite = self
            .tls
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
        let client = if self.tls.peer_certificates().is_some() {
            ", client certificate verified"
        } else {
            ""
        };
        format!("{version}, {suite}{client}")
    }

    /// True while records (or the TCP shutdown after close_notify) are still to go out.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write() || (self.closing && !self.shut)
    }

    /// See `Stream::short_read_drains`.
    pub fn short_read_drains(&self) -> bool {
        self.drained
    }

    /// Writes pending records until done or the socket would block; once they are all
    /// out after close_notify, shuts the TCP write half.
    ///
    /// # Errors
    /// Any write error but `WouldBlock` and `Interrupted`.
    pub fn send_pending(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if self.closing && !self.shut {
            self.tcp.shutdown(std::net::Shutdown::Write)?;
            self.shut = true;
        }
        Ok(())
    }

    /// Sends close_notify (once) and shuts the TCP write half when it is out.
    ///
    /// # Errors
    /// As [`TlsStream::send_pending`].
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.closing {
            self.tls.send_close_notify();
            self.closing = true;
        }
        self.send_pending()
    }

    /// Takes in records from the socket: `Ok(false)` when the socket has nothing more
    /// now (`WouldBlock`), `Ok(true)` after some arrived or at the end of the stream.
    fn take_records(&mut self) -> io::Result<bool> {
        loop {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    self.tcp_eof = true;
                    return Ok(true);
                }
                Ok(_) => break,
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the peer why (the alert is queued by rustls), best effort: the
            // connection is closed by the caller.
            let _ = self.tls.write_tls(&mut self.tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // Handshake messages, and anything else the session has to say.
        self.send_pending()?;
        Ok(true)
    }
}

impl Read for TlsStream {
    /// Fills `buf` with plaintext as far as the socket allows: a read shorter than
    /// `buf` stopped at `WouldBlock` (then [`TlsStream::short_read_drains`]), at the
    /// peer's close_notify or at the end of the TCP stream. `Ok(0)` is the end of
    /// the stream, with close_notify or without (a peer that just closes TCP).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        self.drained = false;
        while filled < buf.len() {
            let room = buf.get_mut(filled..).unwrap_or_default();
            match self.tls.reader().read(room) {
                Ok(0) => return Ok(filled), // close_notify: the clean end
                Ok(n) => {
                    filled += n;
                    continue;
                }
                Err(e) if would_block(&e) => {}
                // TCP ended without close_notify: an end of stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if self.tcp_eof {
                return Ok(filled);
            }
            match self.take_records() {
                Ok(true) => {}
                Ok(false) => {
                    self.drained = true;
                    return if filled > 0 {
                        Ok(filled)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl Write for TlsStream {
    /// Takes plaintext into the session (buffered until the handshake ends, then
    /// encrypted) and writes records as the socket allows; `WouldBlock` once the
    /// session holds 64 KiB the socket has not taken.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closing {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = self.tls.writer().write(buf)?;
        self.send_pending()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.closing {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        self.send_pending()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}
