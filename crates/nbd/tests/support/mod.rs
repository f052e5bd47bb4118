//! Test helpers: an in-memory [`BlockDevice`] that records what it was asked, a minimal raw NBD
//! client speaking the protocol byte by byte, and a server running on a temporary unix socket.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use block::{check_range, BlockDevice, BlockError, DeviceInfo};
use nbd::proto::*;
use nbd::{Export, Server, ShutdownHandle};

/// A disk in memory. Counts flushes, trims and `write_zeroes` calls; can make reads wait until
/// several are in flight at once, to prove that requests run in parallel.
pub struct MemDisk {
    data: Mutex<Vec<u8>>,
    pub read_only: bool,
    pub flushes: AtomicU64,
    pub trims: AtomicU64,
    pub write_zeroes_calls: AtomicU64,
    pub writes: AtomicU64,
    /// Reads wait (up to two seconds) until this many are in flight at once; 0 disables.
    pub read_rendezvous: usize,
    active_reads: Mutex<usize>,
    read_arrived: Condvar,
    pub max_parallel_reads: AtomicUsize,
}

impl MemDisk {
    pub fn new(size: usize) -> Self {
        Self {
            data: Mutex::new(vec![0; size]),
            read_only: false,
            flushes: AtomicU64::new(0),
            trims: AtomicU64::new(0),
            write_zeroes_calls: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            read_rendezvous: 0,
            active_reads: Mutex::new(0),
            read_arrived: Condvar::new(),
            max_parallel_reads: AtomicUsize::new(0),
        }
    }

    pub fn with_pattern(size: usize) -> Self {
        let disk = Self::new(size);
        for (i, byte) in disk.data.lock().unwrap().iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        disk
    }

    pub fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        self.data.lock().unwrap()[offset..offset + len].to_vec()
    }

    fn rendezvous(&self) {
        let mut active = self.active_reads.lock().unwrap();
        *active += 1;
        self.max_parallel_reads.fetch_max(*active, Ordering::SeqCst);
        self.read_arrived.notify_all();
        let deadline = Instant::now() + Duration::from_secs(2);
        while *active < self.read_rendezvous && Instant::now() < deadline {
            active = self.read_arrived.wait_timeout(active, Duration::from_millis(50)).unwrap().0;
        }
        drop(active);
    }
}

impl BlockDevice for MemDisk {
    fn info(&self) -> DeviceInfo {
        let size = self.data.lock().unwrap().len() as u64;
        DeviceInfo { size, read_only: self.read_only, preferred_block: 4096, can_trim: true }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        if self.read_rendezvous > 0 {
            self.rendezvous();
        }
        let data = self.data.lock().unwrap();
        check_range(offset, buf.len() as u64, data.len() as u64)?;
        buf.copy_from_slice(&data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        let mut data = self.data.lock().unwrap();
        check_range(offset, buf.len() as u64, data.len() as u64)?;
        data[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn trim(&self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        self.trims.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.write_zeroes_calls.fetch_add(1, Ordering::SeqCst);
        let mut data = self.data.lock().unwrap();
        check_range(offset, len, data.len() as u64)?;
        data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

/// One reply to an option: its type and payload.
#[derive(Debug)]
pub struct OptReply {
    pub kind: u32,
    pub payload: Vec<u8>,
}

impl OptReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// One structured reply chunk.
#[derive(Debug)]
pub struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub payload: Vec<u8>,
}

/// A raw NBD client: each method writes or reads exactly what the spec says.
pub struct RawClient {
    pub stream: UnixStream,
}

impl RawClient {
    /// Reads the greeting and answers with `client_flags`.
    pub fn handshake(stream: UnixStream, client_flags: u32) -> Self {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut client = Self { stream };
        let greeting = client.read(18);
        assert_eq!(&greeting[0..8], &NBD_MAGIC.to_be_bytes());
        assert_eq!(&greeting[8..16], &IHAVEOPT.to_be_bytes());
        assert_eq!(u16::from_be_bytes([greeting[16], greeting[17]]), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        client.stream.write_all(&client_flags.to_be_bytes()).unwrap();
        client
    }

    pub fn connect(stream: UnixStream) -> Self {
        Self::handshake(stream, CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES)
    }

    pub fn read(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).unwrap();
        buf
    }

    pub fn send_option(&mut self, option: u32, data: &[u8]) {
        let mut msg = IHAVEOPT.to_be_bytes().to_vec();
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.stream.write_all(&msg).unwrap();
    }

    pub fn read_option_reply(&mut self, option: u32) -> OptReply {
        let header = self.read(20);
        assert_eq!(&header[0..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(header[8..12].try_into().unwrap()), option);
        let kind = u32::from_be_bytes(header[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(header[16..20].try_into().unwrap()) as usize;
        OptReply { kind, payload: self.read(len) }
    }

    /// Sends an option and collects replies up to and including the final one (ACK or error).
    pub fn option(&mut self, option: u32, data: &[u8]) -> Vec<OptReply> {
        self.send_option(option, data);
        let mut replies = Vec::new();
        loop {
            let reply = self.read_option_reply(option);
            let last = reply.kind == REP_ACK || reply.kind & REP_ERR_BIT != 0;
            replies.push(reply);
            if last {
                return replies;
            }
        }
    }

    /// `NBD_OPT_GO` for `name`; returns (size, transmission flags) or the final error reply.
    pub fn go(&mut self, name: &str) -> Result<(u64, u16), OptReply> {
        let replies = self.option(OPT_GO, &go_data(name, &[INFO_BLOCK_SIZE]));
        let last = replies.last().unwrap();
        if last.kind != REP_ACK {
            return Err(replies.into_iter().last().unwrap());
        }
        let export = replies
            .iter()
            .find(|r| r.kind == REP_INFO && r.payload[0..2] == INFO_EXPORT.to_be_bytes())
            .expect("NBD_INFO_EXPORT before NBD_REP_ACK");
        let size = u64::from_be_bytes(export.payload[2..10].try_into().unwrap());
        Ok((size, u16::from_be_bytes([export.payload[10], export.payload[11]])))
    }

    pub fn request(&mut self, flags: u16, kind: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) {
        let mut msg = REQUEST_MAGIC.to_be_bytes().to_vec();
        msg.extend_from_slice(&flags.to_be_bytes());
        msg.extend_from_slice(&kind.to_be_bytes());
        msg.extend_from_slice(&cookie.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&length.to_be_bytes());
        msg.extend_from_slice(payload);
        self.stream.write_all(&msg).unwrap();
    }

    /// Reads a simple reply header: (error, cookie).
    pub fn simple_reply(&mut self) -> (u32, u64) {
        let reply = self.read(16);
        assert_eq!(&reply[0..4], &SIMPLE_REPLY_MAGIC.to_be_bytes(), "simple reply magic");
        (
            u32::from_be_bytes(reply[4..8].try_into().unwrap()),
            u64::from_be_bytes(reply[8..16].try_into().unwrap()),
        )
    }

    pub fn chunk(&mut self) -> Chunk {
        let header = self.read(20);
        assert_eq!(&header[0..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes(), "structured reply magic");
        let len = u32::from_be_bytes(header[16..20].try_into().unwrap()) as usize;
        Chunk {
            flags: u16::from_be_bytes([header[4], header[5]]),
            kind: u16::from_be_bytes([header[6], header[7]]),
            cookie: u64::from_be_bytes(header[8..16].try_into().unwrap()),
            payload: self.read(len),
        }
    }

    /// True when the server has closed the connection.
    pub fn at_eof(&mut self) -> bool {
        let mut byte = [0];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}

pub fn go_data(name: &str, info: &[u16]) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&(info.len() as u16).to_be_bytes());
    for item in info {
        data.extend_from_slice(&item.to_be_bytes());
    }
    data
}

pub fn meta_data(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut data = (export.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for query in queries {
        data.extend_from_slice(&(query.len() as u32).to_be_bytes());
        data.extend_from_slice(query.as_bytes());
    }
    data
}

/// A server handling one socketpair connection on a thread; `join` returns `handle`'s result.
pub struct PairConnection {
    pub client: UnixStream,
    pub thread: JoinHandle<Result<(), nbd::ConnectionError>>,
}

pub fn pair(server: &Arc<Server>) -> PairConnection {
    let (client, server_end) = UnixStream::pair().unwrap();
    let server = Arc::clone(server);
    let thread = thread::spawn(move || server.handle(server_end));
    PairConnection { client, thread }
}

pub fn server(exports: Vec<Export>) -> Arc<Server> {
    Arc::new(Server::new(exports).expect("valid exports"))
}

/// A server on a unix socket in a temporary directory; shut down and joined on drop.
pub struct RunningServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    pub fn start(exports: Vec<Export>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nbd.sock");
        let server = Server::new(exports).expect("valid exports");
        let stop = server.shutdown_handle();
        let path = socket.clone();
        let thread = thread::spawn(move || server.serve_unix(&path));
        wait_for(|| socket.exists(), "the server socket to appear");
        Self { dir, socket, stop, thread: Some(thread) }
    }

    /// `nbd+unix:///NAME?socket=PATH`
    pub fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }

    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).unwrap()
    }

    /// Shuts the server down and returns what `serve_unix` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop.shutdown();
        self.thread.take().unwrap().join().expect("server thread panicked")
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.shutdown();
            let _ = thread.join();
        }
    }
}

pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}
