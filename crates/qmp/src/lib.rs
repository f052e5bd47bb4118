//! A client for the QEMU Machine Protocol (QMP): JSON objects, one per line, over a Unix socket.
//!
//! * [`wire`]: decoding what QEMU sends (greeting, return, error, event) — pure, fuzzable.
//! * [`Transport`]: a line-based channel; [`UnixTransport`] talks to QEMU, [`fake::Scripted`]
//!   replays a script in tests.
//! * [`Client`]: negotiation, commands with ids, events kept for the caller.
#![warn(missing_docs)]

pub mod fake;
pub mod wire;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use wire::{Event, Message, QmpError};

/// A line-based channel to QEMU.
pub trait Transport: Send {
    /// Sends one JSON object (without the newline).
    fn send(&mut self, line: &str) -> Result<(), QmpError>;
    /// Sends several JSON objects, in order; one write where the channel allows it.
    fn send_all(&mut self, lines: &[String]) -> Result<(), QmpError> {
        lines.iter().try_for_each(|l| self.send(l))
    }
    /// Receives one line (without the newline); `Ok(None)` at end of stream.
    fn recv(&mut self) -> Result<Option<String>, QmpError>;
    /// Like [`Transport::recv`], but gives up when nothing complete arrived within `timeout`
    /// (a transport that cannot time out, as by default, waits as `recv` does).
    fn recv_within(&mut self, timeout: Duration) -> Result<Received, QmpError> {
        let _ = timeout;
        Ok(match self.recv()? {
            Some(line) => Received::Line(line),
            None => Received::Closed,
        })
    }
}

/// What [`Transport::recv_within`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// One line.
    Line(String),
    /// The end of the stream.
    Closed,
    /// No complete line within the time given.
    TimedOut,
}

/// Events a [`Client`] keeps for its caller at most; older ones are dropped.
pub const MAX_KEPT_EVENTS: usize = 1024;

/// QMP over a Unix socket.
#[derive(Debug)]
pub struct UnixTransport {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The read timeout per line.
    timeout: Duration,
    /// The start of a line whose end has not arrived yet (a [`Transport::recv_within`] that
    /// timed out keeps it here).
    partial: Vec<u8>,
}

/// Longest line vine accepts from QEMU (QMP replies are small; a runaway line is an error).
pub const MAX_LINE: usize = 16 << 20;

impl UnixTransport {
    /// Connects to QEMU's `-qmp unix:PATH,server=on` socket, with a read timeout per line.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let s = UnixStream::connect(path)
            .map_err(|e| QmpError::Io(format!("connect {}: {e}", path.display())))?;
        s.set_read_timeout(Some(timeout)).map_err(|e| QmpError::Io(e.to_string()))?;
        let writer = s.try_clone().map_err(|e| QmpError::Io(e.to_string()))?;
        Ok(Self { reader: BufReader::new(s), writer, timeout, partial: Vec::new() })
    }

    /// Reads until the end of a line; what arrived of an unfinished line stays in `partial`
    /// (`read_until` keeps what it read when it fails).
    fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let room = (MAX_LINE + 1).saturating_sub(self.partial.len()) as u64;
        let n = Read::by_ref(&mut self.reader).take(room).read_until(b'\n', &mut self.partial)?;
        if n == 0 && self.partial.is_empty() {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.partial)))
    }

    fn finish(line: Option<Vec<u8>>) -> Result<Option<String>, QmpError> {
        match line {
            Some(l) if l.len() > MAX_LINE => {
                Err(QmpError::Protocol(format!("a QMP line longer than {MAX_LINE} bytes")))
            }
            Some(l) => String::from_utf8(l)
                .map(|l| Some(l.trim_end().to_string()))
                .map_err(|_| QmpError::Protocol("a QMP line that is not UTF-8".into())),
            None => Ok(None),
        }
    }
}

impl Transport for UnixTransport {
    fn send(&mut self, line: &str) -> Result<(), QmpError> {
        self.writer.write_all(format!("{line}\n").as_bytes()).map_err(|e| QmpError::Io(format!("send: {e}")))
    }
    fn send_all(&mut self, lines: &[String]) -> Result<(), QmpError> {
        let all: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.writer.write_all(all.as_bytes()).map_err(|e| QmpError::Io(format!("send: {e}")))
    }
    fn recv(&mut self) -> Result<Option<String>, QmpError> {
        let line = self.read_line().map_err(|e| QmpError::Io(format!("receive: {e}")))?;
        Self::finish(line)
    }
    fn recv_within(&mut self, timeout: Duration) -> Result<Received, QmpError> {
        let set = |t: &mut Self, d: Duration| {
            // A zero timeout would mean none at all.
            t.reader.get_ref().set_read_timeout(Some(d.max(Duration::from_millis(1))))
        };
        set(self, timeout).map_err(|e| QmpError::Io(e.to_string()))?;
        let got = self.read_line();
        set(self, self.timeout).map_err(|e| QmpError::Io(e.to_string()))?;
        match got {
            Ok(line) => Ok(Self::finish(line)?.map_or(Received::Closed, Received::Line)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Ok(Received::TimedOut)
            }
            Err(e) => Err(QmpError::Io(format!("receive: {e}"))),
        }
    }
}

/// A negotiated QMP session.
pub struct Client<T: Transport> {
    transport: T,
    next_id: u64,
    events: VecDeque<Event>,
    /// QEMU's version from the greeting, e.g. (10, 0, 2).
    pub version: (u64, u64, u64),
}

impl<T: Transport> Client<T> {
    /// Reads the greeting and leaves capabilities negotiation mode.
    pub fn negotiate(mut transport: T) -> Result<Self, QmpError> {
        let line = transport
            .recv()?
            .ok_or_else(|| QmpError::Protocol("QEMU closed QMP before its greeting".into()))?;
        let version = match wire::decode(&line)? {
            Message::Greeting { version } => version,
            other => return Err(QmpError::Protocol(format!("expected the QMP greeting, got {other:?}"))),
        };
        let mut c = Client { transport, next_id: 1, events: VecDeque::new(), version };
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    /// Runs a command and returns its `return` value; events that arrive meanwhile are kept.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut values = self.execute_all(&[(command, arguments)])?;
        Ok(values.pop().expect("one answer per command"))
    }

    /// Runs commands in the order given, sent together: QEMU answers them in order, so they
    /// cost one round trip, not one each. Returns their `return` values; if QEMU refused one, the
    /// first refusal (read after every answer, so the session stays in step). Events that arrive
    /// meanwhile are kept.
    pub fn execute_all(&mut self, commands: &[(&str, Option<Value>)]) -> Result<Vec<Value>, QmpError> {
        let first = self.next_id;
        self.next_id += commands.len() as u64;
        let lines: Vec<String> = (first..)
            .zip(commands)
            .map(|(id, (command, arguments))| {
                let mut msg = json!({ "execute": command, "id": id });
                if let Some(a) = arguments {
                    msg["arguments"] = a.clone();
                }
                msg.to_string()
            })
            .collect();
        self.transport.send_all(&lines)?;
        let mut values = Vec::with_capacity(commands.len());
        let mut refused = None;
        while values.len() < commands.len() {
            let (id, (command, _)) = (first + values.len() as u64, &commands[values.len()]);
            let line = self
                .transport
                .recv()?
                .ok_or_else(|| QmpError::Protocol(format!("QEMU closed QMP while running {command}")))?;
            match wire::decode(&line)? {
                Message::Event(e) => self.keep(e),
                Message::Return { id: Some(got), value } if got == id => values.push(value),
                Message::Error { id: Some(got), class, desc } if got == id => {
                    values.push(Value::Null);
                    refused.get_or_insert(QmpError::Command { command: command.to_string(), class, desc });
                }
                other => tracing::debug!(?other, "QMP message for another request ignored"),
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(values),
        }
    }

    fn keep(&mut self, e: Event) {
        if self.events.len() == MAX_KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Forgets the events received so far that `which` accepts.
    pub fn discard_events(&mut self, which: impl Fn(&Event) -> bool) {
        self.events.retain(|e| !which(e));
    }

    /// Events received so far (oldest first), removed from the client.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Waits for an event named `name` (checking ones already received first).
    pub fn wait_event(&mut self, name: &str) -> Result<Event, QmpError> {
        if let Some(pos) = self.events.iter().position(|e| e.name == name) {
            return Ok(self.events.remove(pos).expect("position is valid"));
        }
        loop {
            let line = self
                .transport
                .recv()?
                .ok_or_else(|| QmpError::Protocol(format!("QEMU closed QMP while waiting for {name}")))?;
            if let Message::Event(e) = wire::decode(&line)? {
                if e.name == name {
                    return Ok(e);
                }
                self.keep(e);
            }
        }
    }

    /// Waits at most `timeout` for an event that `wanted` accepts (checking ones already received
    /// first); `Ok(None)` when none came in time. Other events are kept.
    pub fn wait_event_within(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<Option<Event>, QmpError> {
        if let Some(pos) = self.events.iter().position(&wanted) {
            return Ok(self.events.remove(pos));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.transport.recv_within(left)? {
                Received::TimedOut => return Ok(None),
                Received::Closed => {
                    return Err(QmpError::Protocol("QEMU closed QMP while vine waited for an event".into()))
                }
                Received::Line(line) => {
                    if let Message::Event(e) = wire::decode(&line)? {
                        if wanted(&e) {
                            return Ok(Some(e));
                        }
                        self.keep(e);
                    }
                }
            }
        }
    }

    /// `query-status`: the run state (`running`, `paused`, `prelaunch`, `postmigrate`, …).
    pub fn status(&mut self) -> Result<String, QmpError> {
        let v = self.execute("query-status", None)?;
        v["status"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| QmpError::Protocol(format!("query-status returned {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_line_cut_by_a_timeout_is_whole_when_its_end_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut t = UnixTransport::connect(&path, Duration::from_secs(5)).unwrap();
        let (mut qemu, _) = listener.accept().unwrap();
        // The cut falls inside a two-byte character.
        let line = "{\"event\": \"X\", \"data\": {\"name\": \"é\"}}\n".as_bytes();
        let cut = line.iter().position(|&b| b >= 0x80).unwrap() + 1;
        qemu.write_all(&line[..cut]).unwrap();
        assert_eq!(t.recv_within(Duration::from_millis(30)).unwrap(), Received::TimedOut);
        qemu.write_all(&line[cut..]).unwrap();
        let got = t.recv_within(Duration::from_secs(5)).unwrap();
        assert_eq!(got, Received::Line(String::from_utf8(line[..line.len() - 1].to_vec()).unwrap()));
        // The socket's own timeout is back: a plain receive still works, and the end is seen.
        qemu.write_all(b"{\"return\": {}}\n").unwrap();
        assert_eq!(t.recv().unwrap().as_deref(), Some("{\"return\": {}}"));
        drop(qemu);
        assert_eq!(t.recv_within(Duration::from_secs(5)).unwrap(), Received::Closed);
    }
}
