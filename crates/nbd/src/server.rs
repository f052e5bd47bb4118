//! Sockets and threads: the accept loop, one thread per connection, and shutdown.
//!
//! A [`ShutdownHandle`] stops every accept loop of its server and half-closes every connection
//! (the read side), so requests already received are still answered; connections that have not
//! finished after [`SHUTDOWN_GRACE`] are closed outright.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::error::{display_chain, ConfigError, ConnectionError, HandshakeError};
use crate::export::{Export, ExportTable};
use crate::handshake;
use crate::transmission::{self, Session};

/// How long a stopping server waits for connections to finish their in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a client may stay silent during the handshake before it is dropped, so idle
/// connections cannot pin threads (qemu-nbd's `--handshake-limit` defaults to 10 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after an accept error such as `EMFILE`, so a full descriptor table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Failed connections logged at `warn` per [`FAILURE_LOG_WINDOW`]; the rest go to `debug`, since
/// any client can fail a connection at will.
const FAILURES_LOGGED_PER_WINDOW: u32 = 20;
/// See [`FAILURES_LOGGED_PER_WINDOW`].
const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(60);

/// A connected byte stream the server can split into a reader and a writer.
pub trait Stream: Read + Write + Send + Sized + 'static {
    /// A second handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Who is on the other end, for logs.
    fn peer(&self) -> String;
    /// Bounds how long a read may block (`None`: forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }

    fn peer(&self) -> String {
        peer_pid(self.as_raw_fd()).map_or_else(|| "unix".to_owned(), |pid| format!("unix:pid={pid}"))
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn peer(&self) -> String {
        self.peer_addr().map_or_else(|_| "tcp".to_owned(), |addr| addr.to_string())
    }
}

/// A listening socket the accept loop can poll.
pub trait Listener: AsRawFd {
    /// The connections it yields.
    type Stream: Stream;
    /// Accepts one connection, ready for blocking I/O.
    fn accept_stream(&self) -> io::Result<Self::Stream>;
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    fn accept_stream(&self) -> io::Result<UnixStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    fn accept_stream(&self) -> io::Result<TcpStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        // The spec asks both ends to disable Nagle (§ Protocol phases).
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// An NBD server for a fixed set of exports.
pub struct Server {
    exports: ExportTable,
    control: Arc<Control>,
}

/// Stops a [`Server`] from another thread. Cloning is cheap.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Control>);

#[derive(Default)]
struct Control {
    stopping: AtomicBool,
    state: Mutex<Registry>,
    /// Signalled whenever a connection ends.
    closed: Condvar,
    failure_log: LogBudget,
}

/// A fixed-window budget for log lines a client can trigger.
#[derive(Default)]
struct LogBudget {
    /// Start of the current window and lines spent in it.
    window: Mutex<Option<(Instant, u32)>>,
}

enum Budget {
    Log,
    /// The last line of the window: say that the rest will be quieter.
    LogLast,
    Quiet,
}

impl LogBudget {
    fn spend(&self) -> Budget {
        let now = Instant::now();
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, spent) = window.get_or_insert((now, 0));
        if now.duration_since(*start) >= FAILURE_LOG_WINDOW {
            (*start, *spent) = (now, 0);
        }
        *spent += 1;
        match (*spent).cmp(&FAILURES_LOGGED_PER_WINDOW) {
            std::cmp::Ordering::Less => Budget::Log,
            std::cmp::Ordering::Equal => Budget::LogLast,
            std::cmp::Ordering::Greater => Budget::Quiet,
        }
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Per connection: a second handle used to shut it down.
    connections: HashMap<u64, Box<dyn Fn(Shutdown) + Send>>,
    /// Per accept loop: the write end of the socket pair it polls besides its listener.
    wakers: HashMap<u64, UnixStream>,
}

impl ShutdownHandle {
    /// Stops accepting, stops reading new requests, and lets in-flight requests finish. Every
    /// `serve*` call of the server returns once its connections are gone (or after
    /// [`SHUTDOWN_GRACE`]). A stopped server stays stopped.
    pub fn shutdown(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        let mut registry = self.0.registry();
        for close in registry.connections.values() {
            close(Shutdown::Read);
        }
        for waker in registry.wakers.values_mut() {
            let _ = waker.write_all(&[1]); // non-blocking: one pending byte is enough
        }
    }

    /// True once [`ShutdownHandle::shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }
}

impl Registry {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Control {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Server {
    /// A server for `exports`; the first is also the default export (empty name).
    pub fn new(exports: Vec<Export>) -> Result<Self, ConfigError> {
        Ok(Self { exports: ExportTable::new(exports)?, control: Arc::default() })
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.control))
    }

    /// Listens on the unix socket `path` until shut down, then removes it. A stale socket file
    /// (nobody listening) is replaced; a live one or a non-socket file is an error.
    pub fn serve_unix(&self, path: &Path) -> io::Result<()> {
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path)?;
        info!(socket = %path.display(), "NBD server listening");
        let result = self.serve(listener);
        let _ = fs::remove_file(path);
        result
    }

    /// Listens on a TCP address until shut down.
    pub fn serve_tcp(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr)?;
        info!(address = %listener.local_addr()?, "NBD server listening");
        self.serve(listener)
    }

    /// Accepts connections on `listener`, one thread each, until shut down; returns when all of
    /// them have ended.
    pub fn serve<L: Listener>(&self, listener: L) -> io::Result<()> {
        listener_nonblocking(&listener)?;
        let (wake, waker) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        let id = {
            let mut registry = self.control.registry();
            let id = registry.next_id();
            registry.wakers.insert(id, waker);
            id
        };
        let result = thread::scope(|scope| {
            // Checked after registering the waker: a shutdown either wakes us or is seen here.
            let result = if self.control.stopping.load(Ordering::SeqCst) {
                Ok(())
            } else {
                self.accept_loop(&listener, &wake, scope)
            };
            if result.is_err() {
                self.shutdown_handle().shutdown();
            }
            self.drain();
            result
        });
        self.control.registry().wakers.remove(&id);
        result
    }

    fn accept_loop<'s, L: Listener>(
        &'s self,
        listener: &L,
        wake: &UnixStream,
        scope: &'s thread::Scope<'s, '_>,
    ) -> io::Result<()> {
        loop {
            if !wait_readable(listener.as_raw_fd(), wake.as_raw_fd())?
                || self.control.stopping.load(Ordering::SeqCst)
            {
                return Ok(());
            }
            match listener.accept_stream() {
                Ok(stream) => {
                    thread::Builder::new().name("nbd-conn".into()).spawn_scoped(scope, move || {
                        let _ = self.handle(stream);
                    })?;
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(err) => {
                    warn!(error = %err, "cannot accept an NBD connection");
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }

    /// Waits up to [`SHUTDOWN_GRACE`] for connections to end, then closes the rest.
    fn drain(&self) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut registry = self.control.registry();
        while !registry.connections.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            registry =
                self.control.closed.wait_timeout(registry, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        for close in registry.connections.values() {
            close(Shutdown::Both);
        }
    }

    /// Serves one connection to its end, logging how it ended. Blocks; call it on a thread of
    /// your own for streams you accepted yourself.
    pub fn handle<S: Stream>(&self, mut stream: S) -> Result<(), ConnectionError> {
        let peer = stream.peer();
        let Some(_registration) = self.register(&stream)? else {
            return Ok(()); // shutting down
        };
        debug!(peer, "NBD connection opened");
        let result = self.converse(&mut stream, &peer);
        match &result {
            Ok(()) => debug!(peer, "NBD connection closed"),
            Err(ConnectionError::Handshake(HandshakeError::Io(err)))
                if err.kind() == io::ErrorKind::UnexpectedEof =>
            {
                debug!(peer, "client left during the handshake")
            }
            Err(err) => {
                let error = display_chain(err);
                match self.control.failure_log.spend() {
                    Budget::Log => warn!(peer, error, "NBD connection failed"),
                    Budget::LogLast => warn!(
                        peer,
                        error, "NBD connection failed; more failures this minute are logged at debug level"
                    ),
                    Budget::Quiet => debug!(peer, error, "NBD connection failed"),
                }
            }
        }
        result
    }

    fn converse<S: Stream>(&self, stream: &mut S, peer: &str) -> Result<(), ConnectionError> {
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(HandshakeError::Io)?;
        let Some(negotiated) = handshake::negotiate(stream, &self.exports, peer)? else {
            return Ok(());
        };
        // Transmission may idle for as long as the client likes (a paused VM).
        stream.set_read_timeout(None).map_err(HandshakeError::Io)?;
        let export = negotiated.export;
        let session = Session {
            device: export.device.as_ref(),
            size: negotiated.size,
            read_only: negotiated.read_only,
            claim: &negotiated.claim,
            structured: negotiated.structured,
            meta_context: negotiated.meta_context,
            export: &export.name,
            peer,
        };
        let reader = stream.try_clone().map_err(ConnectionError::Split)?;
        transmission::serve(&session, reader, &mut *stream)?;
        info!(peer, export = export.name, "client left");
        Ok(())
    }

    /// Records the connection so shutdown can reach it; `None` if the server is stopping.
    fn register<S: Stream>(&self, stream: &S) -> Result<Option<Registration<'_>>, ConnectionError> {
        let closer = stream.try_clone().map_err(ConnectionError::Split)?;
        let mut registry = self.control.registry();
        // Checked under the lock: a shutdown either sees this connection or we see the flag.
        // (Checked before registering: a `Registration` dropped while the lock is held would
        // deadlock taking it again.)
        if self.control.stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let id = registry.next_id();
        registry.connections.insert(id, Box::new(move |how| drop(closer.shutdown(how))));
        drop(registry);
        Ok(Some(Registration { control: &self.control, id }))
    }
}

/// Removes a connection from the registry when it ends.
struct Registration<'a> {
    control: &'a Control,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.control.registry().connections.remove(&self.id);
        self.control.closed.notify_all();
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        let message = format!("{} exists and is not a socket", path.display());
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
    }
    if UnixStream::connect(path).is_ok() {
        let message = format!("another server is listening on {}", path.display());
        return Err(io::Error::new(io::ErrorKind::AddrInUse, message));
    }
    debug!(socket = %path.display(), "removing stale socket");
    fs::remove_file(path)
}

fn listener_nonblocking<L: AsRawFd>(listener: &L) -> io::Result<()> {
    let fd = listener.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we borrow; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until `listener` is readable (`true`) or `wake` is (`false`).
fn wait_readable(listener: RawFd, wake: RawFd) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd { fd: listener, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd structs and its length is passed with it.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
        if fds[0].revents != 0 {
            return Ok(true);
        }
    }
}

/// The pid of a unix socket's peer (`SO_PEERCRED`), to tell clients apart in logs.
fn peer_pid(fd: RawFd) -> Option<i32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals; `len` holds the size of `cred`, which the kernel
    // fills with at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_log_goes_quiet_after_its_budget_until_the_window_ends() {
        let budget = LogBudget::default();
        let verdicts: Vec<Budget> = (0..FAILURES_LOGGED_PER_WINDOW + 2).map(|_| budget.spend()).collect();
        let last = FAILURES_LOGGED_PER_WINDOW as usize - 1;
        assert!(verdicts[..last].iter().all(|v| matches!(v, Budget::Log)));
        assert!(matches!(verdicts[last], Budget::LogLast));
        assert!(verdicts[last + 1..].iter().all(|v| matches!(v, Budget::Quiet)));

        let long_ago = Instant::now().checked_sub(FAILURE_LOG_WINDOW).expect("clock past one window");
        *budget.window.lock().unwrap() = Some((long_ago, 1000));
        assert!(matches!(budget.spend(), Budget::Log), "a new window starts afresh");
    }
}
