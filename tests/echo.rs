//! Echo over real sockets: sticky packets, half packets, large frames, many clients,
//! half-close and end of stream in the middle of a frame.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::thread;

use common::{connect, echo_roundtrip, finish, frame_u32be, read_n, read_to_end, Daemon, Rng};

#[test]
fn forty_frames_in_one_write_come_back_in_order() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    let wire: Vec<u8> = (0..40u32)
        .flat_map(|i| {
            frame_u32be(
                format!("frame number {i}")
                    .repeat(i as usize % 5)
                    .as_bytes(),
            )
        })
        .collect();
    echo_roundtrip(&mut client, &wire);
}

#[test]
fn header_sent_byte_by_byte_is_reassembled() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    let frame = frame_u32be(b"one byte at a time");
    for byte in &frame {
        client.write_all(std::slice::from_ref(byte)).unwrap();
        client.flush().unwrap();
    }
    assert_eq!(read_n(&mut client, frame.len()), frame);
    // And the stream is still in sync for the next frame.
    echo_roundtrip(&mut client, &frame_u32be(b"next"));
}

#[test]
fn four_mib_frame_written_before_reading_comes_back_whole() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    let payload = Rng::new(4).bytes(4 << 20);
    let frame = frame_u32be(&payload);
    // Everything is written before anything is read, so the server's echo meets a
    // full receive buffer and must finish with partial writes.
    client.write_all(&frame).unwrap();
    let echoed = read_n(&mut client, frame.len());
    assert!(echoed == frame, "4 MiB echo differs");
    finish(&mut client, b"");
}

#[test]
fn two_hundred_clients_each_get_their_fifty_frames_back() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr;
    let clients: Vec<_> = (0..200u64)
        .map(|id| {
            thread::spawn(move || {
                let mut rng = Rng::new(id + 1);
                let wire: Vec<u8> = (0..50)
                    .flat_map(|_| {
                        let len = rng.below(3000);
                        frame_u32be(&rng.bytes(len))
                    })
                    .collect();
                let mut stream = connect(addr);
                let mut writer = stream.try_clone().unwrap();
                let to_send = wire.clone();
                let sender = thread::spawn(move || {
                    // Arbitrary chunking: sticky and half packets on the wire.
                    let mut rng = Rng::new(id + 1000);
                    let mut rest = &to_send[..];
                    while !rest.is_empty() {
                        let n = (1 + rng.below(4000)).min(rest.len());
                        writer.write_all(&rest[..n]).unwrap();
                        rest = &rest[n..];
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let echoed = read_to_end(&mut stream);
                sender.join().unwrap();
                assert!(
                    echoed == wire,
                    "client {id}: {} of {} bytes, or differing",
                    echoed.len(),
                    wire.len()
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

#[test]
fn half_close_gets_every_complete_frame_then_close() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    let wire: Vec<u8> = (0..1000u32)
        .flat_map(|i| frame_u32be(&i.to_le_bytes().repeat(50)))
        .collect();
    client.write_all(&wire).unwrap();
    finish(&mut client, &wire);
}

#[test]
fn end_of_stream_mid_frame_closes_after_the_complete_frames() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    let mut wire = frame_u32be(b"first");
    wire.extend(frame_u32be(b"second"));
    let complete = wire.clone();
    wire.extend_from_slice(&frame_u32be(b"never finished")[..9]);
    client.write_all(&wire).unwrap();
    finish(&mut client, &complete);
    daemon.wait_for_log("end of stream in the middle of a frame (9 bytes pending)");
    // The daemon carries on for everybody else.
    echo_roundtrip(&mut daemon.connect(), &frame_u32be(b"still here"));
    daemon.assert_alive();
}
