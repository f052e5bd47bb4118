//! Listening, accepting and shutting down, on real unix and TCP sockets.

mod support;

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nbd::proto::*;
use nbd::{ConfigError, Export, Server};
use support::{wait_for, MemDisk, RawClient, RunningServer};

fn export(name: &str) -> Export {
    Export::new(name, Arc::new(MemDisk::new(65536)))
}

#[test]
fn empty_and_duplicate_export_lists_are_rejected() {
    assert_eq!(Server::new(vec![]).err().expect("no exports"), ConfigError::NoExports);
    let err = Server::new(vec![export("a"), export("a")]).err().expect("duplicate");
    assert_eq!(err, ConfigError::DuplicateName { name: "a".into() });
}

#[test]
fn shutdown_returns_from_serve_and_closes_idle_connections() {
    let server = RunningServer::start(vec![export("a")]);
    let mut idle = RawClient::connect(server.connect());
    idle.go("a").expect("GO");
    let mut negotiating = RawClient::connect(server.connect());
    let socket = server.socket.clone();

    let started = Instant::now();
    server.stop().expect("serve_unix ends cleanly");
    assert!(started.elapsed() < Duration::from_secs(4), "idle connections end without the grace period");
    assert!(idle.at_eof());
    assert!(negotiating.at_eof());
    assert!(!socket.exists(), "the socket file is removed");
}

#[test]
fn requests_in_flight_at_shutdown_are_still_answered() {
    let server = RunningServer::start(vec![export("a")]);
    let mut client = RawClient::connect(server.connect());
    client.go("a").expect("GO");
    client.request(0, CMD_READ, 5, 0, 4096, &[]);
    assert_eq!(client.simple_reply(), (0, 5));
    assert_eq!(client.read(4096), vec![0; 4096]);
    client.request(0, CMD_WRITE, 6, 0, 4096, &[1; 4096]);
    server.stop.shutdown();
    assert_eq!(client.simple_reply(), (0, 6), "a request received before the shutdown is answered");
    assert!(client.at_eof());
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves the file behind, nobody listening
    let server = Arc::new(Server::new(vec![export("a")]).unwrap());
    let stop = server.shutdown_handle();
    let serving = {
        let (server, path) = (Arc::clone(&server), path.clone());
        thread::spawn(move || server.serve_unix(&path))
    };
    wait_for(|| std::os::unix::net::UnixStream::connect(&path).is_ok(), "the server to listen");
    stop.shutdown();
    serving.join().unwrap().expect("served");
}

#[test]
fn live_socket_and_regular_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sock");
    let _other_server = UnixListener::bind(&live).unwrap();
    let server = Server::new(vec![export("a")]).unwrap();
    let err = server.serve_unix(&live).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let err = server.serve_unix(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn tcp_listener_serves_the_protocol() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::new(vec![export("a")]).unwrap());
    let stop = server.shutdown_handle();
    let serving = {
        let server = Arc::clone(&server);
        thread::spawn(move || server.serve(listener))
    };
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut greeting = [0; 18];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    assert_eq!(&greeting[8..16], b"IHAVEOPT");
    stop.shutdown();
    serving.join().unwrap().expect("served");
}

#[test]
fn shutdown_before_serving_returns_at_once() {
    let server = Server::new(vec![export("a")]).unwrap();
    server.shutdown_handle().shutdown();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    server.serve(listener).expect("returns immediately");
}

#[test]
fn a_connection_arriving_during_shutdown_is_turned_away_without_deadlock() {
    // Regression: registering a connection after the stop flag was set used to drop its
    // registration while holding the registry lock, which the drop takes again.
    let server = Arc::new(Server::new(vec![export("a")]).unwrap());
    server.shutdown_handle().shutdown();
    let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = Arc::clone(&server);
    thread::spawn(move || tx.send(s.handle(ours).is_ok()).unwrap());
    let handled = rx.recv_timeout(Duration::from_secs(10)).expect("handle() deadlocked");
    assert!(handled);
}
