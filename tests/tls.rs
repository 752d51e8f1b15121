//! TLS against the real daemon, with certificates made in the test (rcgen): echo and
//! backpressure through rustls, close_notify both ways, TLS and TCP clients in one
//! broadcast room, mutual TLS accepted and refused, plaintext on the TLS port closed
//! without harming anyone, the handshake deadline, and the start-up errors (`--splice`,
//! unreadable or mismatched certificate and key).

#![cfg(feature = "tls")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use common::{frame_u32be, read_frame_u32be, run_to_exit, Daemon, Rng, TIMEOUT};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// A CA, a server certificate for `localhost` signed by it, a client certificate
/// signed by it, and one signed by another CA, as PEM files in a folder of their own.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    stranger: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("framecast-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let other_ca = make_ca("another CA");
        let ca = make_ca("framecast test CA");
        let (server, server_key) = leaf(&ca, vec!["localhost".into()]);
        let client = leaf(&ca, vec!["client".into()]);
        let stranger = leaf(&other_ca, vec!["stranger".into()]);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        let (_, wrong_key) = leaf(&ca, vec!["localhost".into()]);
        std::fs::write(dir.join("wrong.key"), wrong_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("garbage.pem"), b"this is no certificate\n").unwrap();
        let der = |(cert, key): (rcgen::Certificate, KeyPair)| {
            (
                cert.der().clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
        };
        Pki {
            ca: ca.der().clone(),
            client: der(client),
            stranger: der(stranger),
            dir,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// `--tls-cert` and `--tls-key` for the server certificate.
    fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server.key"),
        ]
    }

    /// A client that trusts the CA, presenting `cert` if given.
    fn client_config(
        &self,
        cert: Option<&(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        #[allow(deprecated)] // the daemon's provider, see src/reactor/tls.rs
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(vec![cert.clone()], key.clone_key())
                .unwrap(),
        })
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert, key)
}

/// A TLS daemon on loopback with `extra` flags.
fn tls_daemon(pki: &Pki, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = vec!["--listen".into(), "tls://127.0.0.1:0".into()];
    args.extend(pki.server_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&args);
    assert!(
        daemon.listeners[0].starts_with("tls://127.0.0.1:"),
        "{:?}",
        daemon.listeners
    );
    daemon
}

/// A TLS client of `addr` for `localhost`, its handshake done.
fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsClient> {
    let tcp = common::connect(addr);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Writes `data` and reads as many bytes back at the same time (one session, its
/// socket non-blocking, pumped by hand), so a large echo never waits on itself.
fn exchange(client: &mut TlsClient, data: &[u8]) -> Vec<u8> {
    client.sock.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let (mut sent, mut back) = (0, Vec::with_capacity(data.len()));
    let mut buf = vec![0; 64 << 10];
    while back.len() < data.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "echo stalled at {} of {} bytes",
            back.len(),
            data.len()
        );
        let mut progress = false;
        if sent < data.len() && !client.conn.wants_write() {
            let n = client
                .conn
                .writer()
                .write(&data[sent..(sent + 16384).min(data.len())])
                .unwrap();
            sent += n;
            progress |= n > 0;
        }
        while client.conn.wants_write() {
            match client.conn.write_tls(&mut client.sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match client.conn.read_tls(&mut client.sock) {
            Ok(0) => panic!("the server closed after {} bytes", back.len()),
            Ok(_) => {
                client.conn.process_new_packets().unwrap();
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        loop {
            match client.conn.reader().read(&mut buf) {
                Ok(0) => panic!("close_notify after {} bytes", back.len()),
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("plaintext: {e}"),
            }
        }
        if !progress {
            thread::yield_now();
        }
    }
    client.sock.set_nonblocking(false).unwrap();
    back
}

/// Sends close_notify, then reads until the server's own close_notify.
fn finish_cleanly(client: &mut TlsClient) -> Vec<u8> {
    client.conn.send_close_notify();
    client.flush().unwrap();
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("a clean end (close_notify), not a truncated stream");
    rest
}

#[test]
fn frames_are_echoed_through_tls_and_close_notify_ends_both_ways() {
    let pki = Pki::new("echo");
    let daemon = tls_daemon(&pki, &["--max-output", "256KiB"]);
    let mut client = connect(daemon.addr, pki.client_config(None)).unwrap();
    let mut rng = Rng::new(1313);
    let mut frames = Vec::new();
    for _ in 0..300 {
        let len = rng.below(3000);
        frames.extend(frame_u32be(&rng.bytes(len)));
    }
    // Ten times the output cap in one frame: backpressure through rustls's buffers.
    frames.extend(frame_u32be(&rng.bytes(2560 << 10)));
    let back = exchange(&mut client, &frames);
    assert!(back == frames, "the echo through TLS differs");
    assert!(finish_cleanly(&mut client).is_empty());
    daemon.wait_for_log("TLS handshake done");
}

#[test]
fn tls_and_tcp_clients_share_a_broadcast_room() {
    let pki = Pki::new("room");
    let mut args: Vec<String> = [
        "--mode",
        "broadcast",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "tls://127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    args.extend(pki.server_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&args);
    let mut tcp = daemon.connect();
    let mut tls = connect(daemon.addrs[1], pki.client_config(None)).unwrap();
    daemon.wait_for_log("2 open)");
    daemon.wait_for_log("TLS handshake done");
    tcp.write_all(&frame_u32be(b"to tls")).unwrap();
    assert_eq!(read_frame_u32be(&mut tls).unwrap(), b"to tls");
    tls.write_all(&frame_u32be(b"to tcp")).unwrap();
    tls.flush().unwrap();
    assert_eq!(read_frame_u32be(&mut tcp).unwrap(), b"to tcp");
}

#[test]
fn mutual_tls_admits_clients_of_the_ca_and_refuses_the_rest() {
    let pki = Pki::new("mtls");
    let ca = pki.path("ca.pem");
    let daemon = tls_daemon(&pki, &["--tls-client-ca", &ca]);
    let mut good = connect(daemon.addr, pki.client_config(Some(&pki.client))).unwrap();
    good.write_all(&frame_u32be(b"trusted")).unwrap();
    good.flush().unwrap();
    assert_eq!(read_frame_u32be(&mut good).unwrap(), b"trusted");
    daemon.wait_for_log("client certificate verified");

    for (who, config) in [
        ("no certificate", pki.client_config(None)),
        (
            "another CA's certificate",
            pki.client_config(Some(&pki.stranger)),
        ),
    ] {
        // TLS 1.3 clients finish their side before the server checks their
        // certificate: the refusal shows as an alert on the first read.
        let refused = match connect(daemon.addr, config) {
            Err(_) => true,
            Ok(mut client) => {
                let _ = client.write_all(&frame_u32be(b"let me in"));
                let _ = client.flush();
                let mut buf = [0; 16];
                !matches!(client.read(&mut buf), Ok(n) if n > 0)
            }
        };
        assert!(refused, "{who}: served");
    }
    daemon.wait_for_log("TLS: ");
    good.write_all(&frame_u32be(b"still here")).unwrap();
    good.flush().unwrap();
    assert_eq!(read_frame_u32be(&mut good).unwrap(), b"still here");
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_closed_and_nobody_else_notices() {
    let pki = Pki::new("plain");
    let daemon = tls_daemon(&pki, &[]);
    let mut good = connect(daemon.addr, pki.client_config(None)).unwrap();
    for garbage in [
        frame_u32be(b"hello in the clear"),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x16; 4096],
    ] {
        let mut plain = common::connect(daemon.addr);
        plain.write_all(&garbage).unwrap();
        let mut reply = Vec::new();
        // An alert at most, then the close; never an echo.
        let _ = plain.read_to_end(&mut reply);
        assert!(reply.len() < 64, "{} bytes came back", reply.len());
        assert!(
            !reply.windows(5).any(|w| w == b"hello"),
            "echoed in the clear"
        );
    }
    good.write_all(&frame_u32be(b"unharmed")).unwrap();
    good.flush().unwrap();
    assert_eq!(read_frame_u32be(&mut good).unwrap(), b"unharmed");
}

#[test]
fn a_stalled_handshake_is_closed_at_its_deadline() {
    let pki = Pki::new("stall");
    let daemon = tls_daemon(&pki, &["--tls-handshake-timeout", "200ms"]);
    let mut silent = common::connect(daemon.addr);
    let mut buf = [0; 16];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a close, got {other:?}"),
    }
    daemon.wait_for_log("TLS handshake timeout");
}

#[test]
fn splice_with_tls_is_a_usage_error() {
    let pki = Pki::new("splice");
    let mut args: Vec<String> = [
        "--listen",
        "tls://127.0.0.1:0",
        "--framing",
        "raw",
        "--splice",
    ]
    .map(String::from)
    .to_vec();
    args.extend(pki.server_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stderr) = run_to_exit(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("'--splice' with a tls:// listener"),
        "{stderr}"
    );
}

#[test]
fn an_unusable_certificate_or_key_is_one_line_naming_the_file() {
    let pki = Pki::new("bad");
    let cases = [
        ("missing.pem", "server.key", "missing.pem: cannot read it"),
        (
            "garbage.pem",
            "server.key",
            "garbage.pem: no certificate in it",
        ),
        ("server.pem", "missing.key", "missing.key: cannot read it"),
        (
            "server.pem",
            "garbage.pem",
            "garbage.pem: no usable PEM private key",
        ),
        (
            "server.pem",
            "wrong.key",
            "wrong.key: the key does not match the certificate",
        ),
    ];
    for (cert, key, why) in cases {
        let (cert, key) = (pki.path(cert), pki.path(key));
        let args = [
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let (code, stderr) = run_to_exit(&args);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
    let (code, stderr) = run_to_exit(&["--listen", "tls://127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs a certificate and a key"), "{stderr}");
}

#[test]
fn tls_serves_on_ipv6_loopback() {
    if !common::has_ipv6_loopback() {
        return;
    }
    let pki = Pki::new("v6");
    let mut args: Vec<String> = ["--listen", "tls://[::1]:0"].map(String::from).to_vec();
    args.extend(pki.server_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&args);
    let mut client = connect(daemon.addr, pki.client_config(None)).unwrap();
    client.write_all(&frame_u32be(b"v6")).unwrap();
    client.flush().unwrap();
    assert_eq!(read_frame_u32be(&mut client).unwrap(), b"v6");
}

#[test]
fn the_graceful_drain_says_goodbye_and_close_notify_over_tls() {
    let pki = Pki::new("drain");
    let mut daemon = tls_daemon(&pki, &["--goodbye"]);
    let mut client = connect(daemon.addr, pki.client_config(None)).unwrap();
    let frames: Vec<u8> = (0..50u32)
        .flat_map(|i| frame_u32be(&i.to_be_bytes()))
        .collect();
    let back = exchange(&mut client, &frames);
    assert!(back == frames);
    daemon.signal("TERM");
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("the daemon ends the session with close_notify");
    assert_eq!(rest, frame_u32be(b"framecast: closing: shutdown"));
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
}
