//! What a connection costs while it holds part of a frame (its leftover bytes, not a
//! read buffer: 15,000 connections that each sent one header byte once held 245 MB), and
//! once it has gone quiet after traffic (at most 1 KiB: it keeps no read buffer).

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{frame_u32be, Daemon};

/// Connections opened; the test process and the daemon both need a descriptor each.
const CONNECTIONS: usize = 3000;

/// Raises the open-file limit for the test's connections; false (with the reason
/// printed) if it cannot be.
fn enough_descriptors() -> bool {
    match framecast::fd_limit::raise_for(CONNECTIONS + 100) {
        Ok(framecast::fd_limit::FdLimit::Short { limit, .. }) => {
            println!("skipped: the open-file limit is {limit}, under {CONNECTIONS}");
            false
        }
        Ok(_) => true,
        Err(e) => {
            println!("skipped: cannot raise the open-file limit: {e}");
            false
        }
    }
}

#[test]
fn a_one_byte_partial_frame_costs_about_its_size_not_a_read_buffer() {
    if !enough_descriptors() {
        return;
    }
    let daemon = Daemon::start_with_env(&["--frame-timeout", "off"], &[("RUST_LOG", "info")]);
    let mut probe = daemon.connect();
    common::echo_roundtrip(&mut probe, &frame_u32be(b"warm up"));
    let before = daemon.rss_kib();
    let clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut client = daemon.connect();
            client.write_all(&[0]).unwrap(); // the first byte of a u32be header
            client
        })
        .collect();
    // The daemon serves ready connections in the order they became ready: once this
    // echo is back, every one-byte client before it has been read.
    let mut last = daemon.connect();
    common::echo_roundtrip(&mut last, &frame_u32be(b"after them all"));
    let per_connection = (daemon.rss_kib().saturating_sub(before) * 1024) / CONNECTIONS as u64;
    assert!(
        per_connection < 2048,
        "{per_connection} bytes per connection holding one byte"
    );
    // Every one of them can still finish its frame and get it back.
    for mut client in clients.into_iter().take(20) {
        client.write_all(&[0, 0, 2, b'o', b'k']).unwrap();
        assert_eq!(common::read_n(&mut client, 6), [0, 0, 0, 2, b'o', b'k']);
    }
}

#[test]
fn a_connection_quiet_after_a_frame_costs_under_a_kibibyte() {
    if !enough_descriptors() {
        return;
    }
    let daemon = Daemon::start_with_env(&[], &[("RUST_LOG", "info")]);
    let mut probe = daemon.connect();
    common::echo_roundtrip(&mut probe, &frame_u32be(b"warm up"));
    let before = daemon.rss_kib();
    let frame = frame_u32be(&[b'q'; 512]);
    let mut clients: Vec<TcpStream> = (0..CONNECTIONS).map(|_| daemon.connect()).collect();
    for client in &mut clients {
        client.write_all(&frame).unwrap();
    }
    // Every echo back: each connection has had its traffic and is quiet now.
    for client in &mut clients {
        assert_eq!(common::read_n(client, frame.len()), frame, "echo differs");
    }
    let per_connection = (daemon.rss_kib().saturating_sub(before) * 1024) / CONNECTIONS as u64;
    assert!(
        per_connection <= 1024,
        "{per_connection} bytes per connection quiet after one 512-byte frame"
    );
    // And each is still served.
    for client in clients.iter_mut().take(20) {
        common::echo_roundtrip(client, &frame);
    }
}
