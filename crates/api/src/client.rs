//! The CLI's side of the API: blocking HTTP/1.1 requests over the local Unix socket. Answers
//! with a 2xx status give their JSON body; others give the server's `error` sentence.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

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
    /// The answer was not HTTP with a JSON body.
    #[error("the vine daemon at {path} sent an unreadable answer: {problem}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
    /// The daemon refused or failed the request (HTTP status and its sentence).
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
}

/// The local daemon.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode_chunked(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

impl Client {
    /// A client for the daemon listening on `path`.
    pub fn new(path: &Path) -> Client {
        Client { path: path.to_path_buf() }
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let path = self.path.clone();
        let io = |source| ClientError::Io { path: path.clone(), source };
        let proto = |problem: String| ClientError::Protocol { path: self.path.clone(), problem };
        let mut s = UnixStream::connect(&self.path)
            .map_err(|source| ClientError::Connect { path: self.path.clone(), source })?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n");
        if body.is_some() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                payload.len()
            ));
        } else if method != "GET" && method != "DELETE" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(payload.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        let split =
            raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| proto("no end of headers".into()))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut body = raw[split + 4..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| proto(format!("bad status line {:?}", head.lines().next())))?;
        if head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:")
                && l.to_ascii_lowercase().contains("chunked")
        }) {
            body = decode_chunked(&body).ok_or_else(|| proto("bad chunked body".into()))?;
        }
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else if head.to_ascii_lowercase().contains("content-type: application/json") {
            serde_json::from_slice(&body).map_err(|e| proto(e.to_string()))?
        } else {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        };
        Ok((status, value))
    }

    /// Like [`Client::request`], turning a non-2xx answer into [`ClientError::Refused`].
    pub fn call(&self, method: &str, target: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let (status, v) = self.request(method, target, body)?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let message = v["error"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}: {v}"));
        Err(ClientError::Refused { status, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_and_encoding() {
        assert_eq!(decode_chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(decode_chunked(b"zz\r\n").is_none());
        assert!(decode_chunked(b"5\r\nab").is_none());
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
