//! The transmission phase: one reader thread decodes requests and hands them to a pool of
//! workers, which run them against the device and write replies under a shared writer lock.
//!
//! Architecture invariants:
//! - A reply is written only after its device call returned, so `NBD_CMD_FLUSH` (which calls
//!   [`BlockDevice::flush`], covering every completed write) covers every write the client saw
//!   answered before sending the flush, as § Ordering of messages and writes requires.
//! - Memory per connection is bounded: at most [`MAX_IN_FLIGHT`] requests and
//!   [`MAX_IN_FLIGHT_BYTES`] of payload; larger requests are refused before anything is allocated.
//! - The reader never loses sync: every `NBD_CMD_WRITE` payload is read or skipped, even when the
//!   request is refused.

use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;

use block::{check_range, BlockDevice, BlockError};
use tracing::{debug, warn};

use crate::error::{display_chain, wire_error, TransmissionError};
use crate::proto::{self, Command, EINVAL, ENOSPC, EPERM, MAX_PAYLOAD, REQUEST_HEADER_LEN};
use crate::proto::{SIMPLE_REPLY_LEN, STRUCTURED_HEADER_LEN};
use crate::{read_exact_or_eof, skip};

/// Requests executed at once on one connection (queue depth 16 clients get full parallelism).
pub const MAX_IN_FLIGHT: usize = 16;
/// Payload bytes held at once on one connection; one request of [`MAX_PAYLOAD`] always fits.
pub const MAX_IN_FLIGHT_BYTES: u64 = 2 * MAX_PAYLOAD as u64;
/// Buffer in front of the socket, so small requests cost one `read` for several headers.
const READ_BUFFER: usize = 128 * 1024;
/// Largest zero buffer used to honour `NBD_CMD_FLAG_NO_HOLE`.
const ZERO_CHUNK: usize = 1024 * 1024;
/// Device errors logged at `warn` per connection before the rest go to `debug`.
const LOGGED_DEVICE_ERRORS: u32 = 10;

/// What the handshake agreed on, as transmission needs it.
pub(crate) struct Session<'a> {
    pub(crate) device: &'a dyn BlockDevice,
    pub(crate) size: u64,
    pub(crate) read_only: bool,
    /// The connection's hold on its export (a handover export's writer slot is taken here).
    pub(crate) claim: &'a crate::export::Claim<'a>,
    pub(crate) structured: bool,
    pub(crate) meta_context: Option<u32>,
    pub(crate) export: &'a str,
    pub(crate) peer: &'a str,
}

/// Serves requests until `NBD_CMD_DISC`, end of stream, or a fatal protocol error; returns after
/// every accepted request has been answered (or its reply failed).
pub(crate) fn serve<R: Read, W: Write + Send>(
    session: &Session<'_>,
    reader: R,
    writer: W,
) -> Result<(), TransmissionError> {
    let replies =
        Replies { out: Mutex::new(writer), structured: session.structured, broken: AtomicBool::new(false) };
    let in_flight = InFlight::default();
    let device_errors = AtomicU32::new(0);
    let (jobs, queue) = mpsc::sync_channel::<Job<'_>>(MAX_IN_FLIGHT);
    let queue = Mutex::new(queue);
    thread::scope(|scope| {
        let spawned = (0..MAX_IN_FLIGHT).try_for_each(|_| {
            thread::Builder::new()
                .name("nbd-worker".into())
                .spawn_scoped(scope, || work(session, &queue, &replies, &device_errors))
                .map(drop)
        });
        let reader = BufReader::with_capacity(READ_BUFFER, reader);
        let result = match spawned {
            Ok(()) => read_requests(session, reader, &jobs, &replies, &in_flight),
            Err(err) => Err(err.into()),
        };
        drop(jobs); // workers drain the queue and exit; the scope joins them
        result
    })
}

/// One request handed from the reader to a worker.
struct Job<'p> {
    cookie: u64,
    command: Command,
    payload: Vec<u8>,
    _permit: Permit<'p>,
}

fn read_requests<'p, R: Read, W: Write>(
    session: &Session<'_>,
    mut reader: R,
    jobs: &SyncSender<Job<'p>>,
    replies: &Replies<W>,
    in_flight: &'p InFlight,
) -> Result<(), TransmissionError> {
    let mut header = [0; REQUEST_HEADER_LEN];
    loop {
        if replies.broken.load(Ordering::Relaxed) || !read_exact_or_eof(&mut reader, &mut header)? {
            return Ok(());
        }
        let request = proto::decode_request(&header)?;
        let refuse = |message: String| {
            debug!(export = session.export, peer = session.peer, "refused request: {message}");
            replies.send(request.cookie, Outcome::Failed(Failure { code: EINVAL, message }));
        };
        let command = match Command::from_header(&request) {
            Ok(command) => command,
            Err(err) => {
                if request.has_payload() {
                    skip(&mut reader, request.length)?;
                }
                refuse(err.to_string());
                continue;
            }
        };
        let payload_len = match command {
            Command::Disconnect => return Ok(()),
            Command::Read { length, .. } | Command::Write { length, .. } => length,
            _ => 0,
        };
        if payload_len > MAX_PAYLOAD {
            if request.has_payload() {
                skip(&mut reader, request.length)?;
            }
            let command = proto::command_name(request.kind);
            refuse(format!("{command} of {payload_len} bytes exceeds the maximum block size {MAX_PAYLOAD}"));
            continue;
        }
        let permit = in_flight.acquire(payload_len);
        let mut payload = Vec::new();
        if request.has_payload() {
            payload = vec![0; payload_len as usize];
            reader.read_exact(&mut payload)?;
        }
        let job = Job { cookie: request.cookie, command, payload, _permit: permit };
        if jobs.send(job).is_err() {
            return Err(io::Error::other("the request workers have exited").into());
        }
    }
}

fn work<W: Write>(
    session: &Session<'_>,
    queue: &Mutex<Receiver<Job<'_>>>,
    replies: &Replies<W>,
    errors: &AtomicU32,
) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        let outcome = match execute(session, job.command, &job.payload, replies.headroom()) {
            Ok(outcome) => outcome,
            Err(Refusal::Client(failure)) => {
                debug!(export = session.export, peer = session.peer, "refused request: {}", failure.message);
                Outcome::Failed(failure)
            }
            Err(Refusal::Device { op, error, write }) => {
                log_device_error(session, errors, op, &error);
                Outcome::Failed(Failure {
                    code: wire_error(&error, write),
                    message: format!("{op}: {error}"),
                })
            }
        };
        replies.send(job.cookie, outcome);
    }
}

/// A successful result, ready to be encoded.
enum Outcome {
    Done,
    /// Read data, preceded by [`Replies::headroom`] bytes for the reply header.
    Data {
        offset: u64,
        buf: Vec<u8>,
    },
    /// One `base:allocation` extent: allocated data.
    Extent {
        context: u32,
        length: u32,
    },
    Failed(Failure),
}

struct Failure {
    code: u32,
    message: String,
}

enum Refusal {
    /// The request itself is wrong; nothing was done.
    Client(Failure),
    /// The device failed.
    Device { op: &'static str, error: BlockError, write: bool },
}

fn client(code: u32, message: impl Into<String>) -> Refusal {
    Refusal::Client(Failure { code, message: message.into() })
}

fn device(op: &'static str, write: bool) -> impl FnOnce(BlockError) -> Refusal {
    move |error| Refusal::Device { op, error, write }
}

fn execute(s: &Session<'_>, command: Command, payload: &[u8], headroom: usize) -> Result<Outcome, Refusal> {
    match command {
        Command::Read { offset, length, dont_fragment } => {
            if dont_fragment && !s.structured {
                return Err(client(EINVAL, "NBD_CMD_FLAG_DF needs structured replies"));
            }
            s.check_range(offset, length, EINVAL)?;
            let mut buf = vec![0; headroom + length as usize];
            s.device.read_at(&mut buf[headroom..], offset).map_err(device("read", false))?;
            Ok(Outcome::Data { offset, buf })
        }
        Command::Write { offset, length, fua } => {
            s.check_writable()?;
            s.check_range(offset, length, ENOSPC)?;
            s.device.write_at(payload, offset).map_err(device("write", true))?;
            s.persist(fua)
        }
        Command::Flush => {
            s.device.flush().map_err(device("flush", true))?;
            Ok(Outcome::Done)
        }
        Command::Trim { offset, length, fua } => {
            s.check_writable()?;
            s.check_range(offset, length, EINVAL)?;
            s.device.trim(offset, u64::from(length)).map_err(device("trim", true))?;
            s.persist(fua)
        }
        Command::Cache { offset, length } => {
            s.check_range(offset, length, EINVAL)?;
            Ok(Outcome::Done)
        }
        Command::WriteZeroes { offset, length, fua, no_hole, fast } => {
            if fast {
                return Err(client(EINVAL, "NBD_CMD_FLAG_FAST_ZERO was not advertised"));
            }
            s.check_writable()?;
            s.check_range(offset, length, ENOSPC)?;
            if no_hole {
                write_allocated_zeroes(s.device, offset, length).map_err(device("write zeroes", true))?;
            } else {
                s.device.write_zeroes(offset, u64::from(length)).map_err(device("write zeroes", true))?;
            }
            s.persist(fua)
        }
        Command::BlockStatus { offset, length, .. } => {
            let Some(context) = s.meta_context else {
                return Err(client(EINVAL, "NBD_CMD_BLOCK_STATUS without a negotiated metadata context"));
            };
            if length == 0 {
                return Err(client(EINVAL, "NBD_CMD_BLOCK_STATUS of zero bytes"));
            }
            s.check_range(offset, length, EINVAL)?;
            Ok(Outcome::Extent { context, length })
        }
        Command::Disconnect => unreachable!("the reader handles NBD_CMD_DISC itself"),
    }
}

impl Session<'_> {
    fn check_range(&self, offset: u64, length: u32, code: u32) -> Result<(), Refusal> {
        check_range(offset, u64::from(length), self.size).map_err(|err| client(code, err.to_string()))
    }

    fn check_writable(&self) -> Result<(), Refusal> {
        if self.read_only {
            return Err(client(EPERM, format!("export '{}' is read-only", self.export)));
        }
        self.claim.writer().map_err(|m| client(EPERM, m))
    }

    /// Completes a write; with `NBD_CMD_FLAG_FUA` the data is made durable before the reply.
    fn persist(&self, fua: bool) -> Result<Outcome, Refusal> {
        if fua {
            self.device.flush().map_err(device("flush", true))?;
        }
        Ok(Outcome::Done)
    }
}

/// `NBD_CMD_WRITE_ZEROES` with `NBD_CMD_FLAG_NO_HOLE`: plain writes, so nothing is deallocated.
fn write_allocated_zeroes(device: &dyn BlockDevice, offset: u64, length: u32) -> Result<(), BlockError> {
    let length = length as usize;
    let zeros = vec![0; ZERO_CHUNK.min(length)];
    let mut done = 0;
    while done < length {
        let n = ZERO_CHUNK.min(length - done);
        device.write_at(&zeros[..n], offset + done as u64)?;
        done += n;
    }
    Ok(())
}

fn log_device_error(s: &Session<'_>, count: &AtomicU32, op: &str, error: &BlockError) {
    let seen = count.fetch_add(1, Ordering::Relaxed);
    let error = display_chain(error);
    if seen < LOGGED_DEVICE_ERRORS {
        warn!(export = s.export, peer = s.peer, op, error, "device error");
    } else if seen == LOGGED_DEVICE_ERRORS {
        warn!(
            export = s.export,
            peer = s.peer,
            "further device errors on this connection are logged at debug level"
        );
    } else {
        debug!(export = s.export, peer = s.peer, op, error, "device error");
    }
}

/// The write half of the connection, shared by the workers and the reader.
struct Replies<W> {
    out: Mutex<W>,
    structured: bool,
    /// Set after the first failed write; the reader stops taking requests.
    broken: AtomicBool,
}

impl<W: Write> Replies<W> {
    /// Bytes reserved in front of read data for the reply header, so header and data go out in
    /// one write without copying.
    fn headroom(&self) -> usize {
        if self.structured {
            STRUCTURED_HEADER_LEN + 8
        } else {
            SIMPLE_REPLY_LEN
        }
    }

    fn send(&self, cookie: u64, outcome: Outcome) {
        let result = match outcome {
            Outcome::Done => self.write(&proto::simple_reply(cookie, 0)),
            Outcome::Data { offset, mut buf } => {
                let headroom = self.headroom();
                let length = u32::try_from(buf.len() - headroom).expect("read length bounded by MAX_PAYLOAD");
                if !self.structured {
                    buf[..headroom].copy_from_slice(&proto::simple_reply(cookie, 0));
                    self.write(&buf)
                } else if length == 0 {
                    // An OFFSET_DATA chunk must carry at least one byte.
                    self.write(&proto::none_chunk(cookie))
                } else {
                    buf[..headroom].copy_from_slice(&proto::offset_data_header(cookie, offset, length));
                    self.write(&buf)
                }
            }
            Outcome::Extent { context, length } => {
                self.write(&proto::block_status_chunk(cookie, context, &[(length, 0)]))
            }
            Outcome::Failed(Failure { code, message }) if self.structured => {
                self.write(&proto::error_chunk(cookie, code, &message))
            }
            Outcome::Failed(Failure { code, .. }) => self.write(&proto::simple_reply(cookie, code)),
        };
        if let Err(err) = result {
            if !self.broken.swap(true, Ordering::Relaxed) {
                debug!("cannot send a reply, the client is gone: {err}");
            }
        }
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(bytes)?;
        out.flush()
    }
}

/// Bounds the requests (and payload bytes) a connection has in flight.
#[derive(Default)]
struct InFlight {
    load: Mutex<Load>,
    freed: Condvar,
}

#[derive(Default)]
struct Load {
    requests: usize,
    bytes: u64,
}

impl InFlight {
    /// Waits until one more request of `bytes` fits.
    fn acquire(&self, bytes: u32) -> Permit<'_> {
        let bytes = u64::from(bytes);
        let mut load = self.load.lock().unwrap_or_else(PoisonError::into_inner);
        while load.requests >= MAX_IN_FLIGHT
            || (load.requests > 0 && load.bytes + bytes > MAX_IN_FLIGHT_BYTES)
        {
            load = self.freed.wait(load).unwrap_or_else(PoisonError::into_inner);
        }
        load.requests += 1;
        load.bytes += bytes;
        Permit { pool: self, bytes }
    }
}

/// One request's share of [`InFlight`], returned when the request's reply has been sent.
struct Permit<'a> {
    pool: &'a InFlight,
    bytes: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut load = self.pool.load.lock().unwrap_or_else(PoisonError::into_inner);
        load.requests -= 1;
        load.bytes -= self.bytes;
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn in_flight_bytes_are_bounded_but_one_maximal_request_always_fits() {
        let pool = &InFlight::default();
        let first = pool.acquire(MAX_PAYLOAD);
        let second = pool.acquire(MAX_PAYLOAD);
        thread::scope(|scope| {
            let (acquired, waiting) = mpsc::channel();
            scope.spawn(move || {
                let _third = pool.acquire(1);
                acquired.send(()).unwrap();
            });
            assert!(waiting.recv_timeout(Duration::from_millis(100)).is_err(), "third request must wait");
            drop(first);
            waiting.recv_timeout(Duration::from_secs(5)).expect("third request admitted after a release");
        });
        drop(second);
        let load = pool.load.lock().unwrap();
        assert_eq!((load.requests, load.bytes), (0, 0));
    }

    #[test]
    fn in_flight_requests_are_bounded_by_count() {
        let pool = &InFlight::default();
        let permits: Vec<Permit<'_>> = (0..MAX_IN_FLIGHT).map(|_| pool.acquire(0)).collect();
        thread::scope(|scope| {
            let (acquired, waiting) = mpsc::channel();
            scope.spawn(move || {
                let _extra = pool.acquire(0);
                acquired.send(()).unwrap();
            });
            assert!(waiting.recv_timeout(Duration::from_millis(100)).is_err(), "request 17 must wait");
            drop(permits);
            waiting.recv_timeout(Duration::from_secs(5)).expect("admitted after the others finish");
        });
    }
}
