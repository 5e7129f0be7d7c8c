//! Sockets through the ring: accept, recv, send, and splice from a file to a socket with the
//! bytes checked on the other side; pinning a thread to a core.

mod common;

use std::io::{Read, Write};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use common::run;
use ringtail_engine::io::{
    accept, current_affinity, listen_reuseport, pin_current_thread, recv, send_all,
    splice_to_socket, Pipe,
};

#[test]
fn accept_recv_send_round_trip() {
    let listener = listen_reuseport("127.0.0.1:0".parse().expect("addr"), 16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(b"hello ringtail").expect("write");
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).expect("read");
        reply
    });
    run(async move {
        let stream = Rc::new(accept(Rc::new(listener)).await.expect("accept"));
        let mut buf = BytesMut::with_capacity(64);
        while buf.len() < 14 {
            let (result, _, back) = recv(stream.clone(), buf, 64).await;
            assert!(result.expect("recv") > 0);
            buf = back;
        }
        assert_eq!(&buf[..], b"hello ringtail");
        let (result, _) = send_all(stream, Bytes::from_static(b"world")).await;
        result.expect("send");
    });
    assert_eq!(&client.join().expect("client"), b"world");
}

#[test]
fn two_listeners_share_a_port() {
    let first = listen_reuseport("127.0.0.1:0".parse().expect("addr"), 16).expect("listen");
    let addr = first.local_addr().expect("addr");
    let second = listen_reuseport(addr, 16).expect("a second listener on the same port");
    assert_eq!(second.local_addr().expect("addr"), addr);
}

#[test]
fn splice_moves_a_file_range_to_a_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).expect("write");
    let listener = listen_reuseport("127.0.0.1:0".parse().expect("addr"), 16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let (start, len) = (12_345usize, 2_500_000usize);
    let reader = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).expect("read");
        got
    });
    run(async move {
        let stream = Rc::new(accept(Rc::new(listener)).await.expect("accept"));
        let file = Rc::new(std::fs::File::open(&path).expect("open"));
        // A small pipe forces many file -> pipe -> socket rounds.
        let pipe = Rc::new(Pipe::new(64 * 1024).expect("pipe"));
        splice_to_socket(pipe, file, start as u64, len as u64, stream)
            .await
            .expect("splice");
    });
    let got = reader.join().expect("reader");
    assert_eq!(got.len(), len);
    assert!(got == content[start..start + len], "spliced bytes differ");
}

#[test]
fn a_thread_pins_to_one_core() {
    std::thread::spawn(|| {
        let cores = current_affinity().expect("affinity");
        let target = *cores.last().expect("at least one core");
        pin_current_thread(target).expect("pin");
        assert_eq!(current_affinity().expect("affinity"), vec![target]);
        assert!(pin_current_thread(1 << 20).is_err());
    })
    .join()
    .expect("thread");
}
