//! The CLI's side of the daemon socket: connect, send one [`Request`], read one [`Response`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::protocol::{Request, Response};

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket.
    #[error("cannot reach the vine daemon at {path}: {source} (is `vine daemon` running? set VINE_SOCKET or --socket)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("talking to the vine daemon at {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("the vine daemon at {path} sent an unreadable answer: {problem}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
    /// The daemon refused or failed the request; the message is for the operator.
    #[error("{0}")]
    Refused(String),
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon's socket.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path)
            .map_err(|source| ClientError::Connect { path: path.to_path_buf(), source })?;
        let writer = s.try_clone().map_err(|source| ClientError::Io { path: path.to_path_buf(), source })?;
        Ok(Client { path: path.to_path_buf(), reader: BufReader::new(s), writer })
    }

    /// Sends a request and returns the result of a successful one.
    pub fn call(&mut self, req: &Request) -> Result<Value, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let line = serde_json::to_string(req).expect("requests always serialise");
        self.writer.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        let mut answer = String::new();
        let n = self
            .reader
            .read_line(&mut answer)
            .map_err(|source| ClientError::Io { path: self.path.clone(), source })?;
        if n == 0 {
            return Err(ClientError::Protocol {
                path: self.path.clone(),
                problem: "the daemon closed the connection without answering".into(),
            });
        }
        let resp: Response = serde_json::from_str(&answer)
            .map_err(|e| ClientError::Protocol { path: self.path.clone(), problem: e.to_string() })?;
        if resp.ok {
            Ok(resp.result)
        } else {
            Err(ClientError::Refused(resp.error.unwrap_or_else(|| "the daemon gave no reason".into())))
        }
    }
}
