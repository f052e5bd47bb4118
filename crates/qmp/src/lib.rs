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
use std::time::Duration;

use serde_json::{json, Value};

pub use wire::{Event, Message, QmpError};

/// A line-based channel to QEMU.
pub trait Transport: Send {
    /// Sends one JSON object (without the newline).
    fn send(&mut self, line: &str) -> Result<(), QmpError>;
    /// Receives one line (without the newline); `Ok(None)` at end of stream.
    fn recv(&mut self) -> Result<Option<String>, QmpError>;
}

/// QMP over a Unix socket.
#[derive(Debug)]
pub struct UnixTransport {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
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
        Ok(Self { reader: BufReader::new(s), writer })
    }
}

impl Transport for UnixTransport {
    fn send(&mut self, line: &str) -> Result<(), QmpError> {
        self.writer.write_all(format!("{line}\n").as_bytes()).map_err(|e| QmpError::Io(format!("send: {e}")))
    }
    fn recv(&mut self) -> Result<Option<String>, QmpError> {
        let mut line = String::new();
        let n = Read::by_ref(&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| QmpError::Io(format!("receive: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if n > MAX_LINE {
            return Err(QmpError::Protocol(format!("a QMP line longer than {MAX_LINE} bytes")));
        }
        Ok(Some(line.trim_end().to_string()))
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
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        self.transport.send(&msg.to_string())?;
        loop {
            let line = self
                .transport
                .recv()?
                .ok_or_else(|| QmpError::Protocol(format!("QEMU closed QMP while running {command}")))?;
            match wire::decode(&line)? {
                Message::Event(e) => self.events.push_back(e),
                Message::Return { id: Some(got), value } if got == id => return Ok(value),
                Message::Error { id: Some(got), class, desc } if got == id => {
                    return Err(QmpError::Command { command: command.to_string(), class, desc })
                }
                other => tracing::debug!(?other, "QMP message for another request ignored"),
            }
        }
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
                self.events.push_back(e);
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
