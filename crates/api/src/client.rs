//! The CLI's side of the API: blocking HTTP/1.1 requests over the local Unix socket, or over
//! HTTPS to a remote daemon whose certificate is pinned by its SHA-256 fingerprint (trusted on
//! first use by `vine remote add`) with an API token. Answers with a 2xx status give their JSON
//! body; others give the server's `error` sentence.

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

/// Where the daemon is.
#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Https { addr: String, fingerprint: String, token: Option<String> },
}

/// A daemon to talk to.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    target: Target,
}

/// Accepts exactly the certificate with the pinned fingerprint (self-signed hosts).
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
    seen: std::sync::Mutex<Option<String>>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fp = crate::tls::fingerprint(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
        if self.fingerprint.is_empty() || fp.eq_ignore_ascii_case(&self.fingerprint) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {fp} is not the trusted {}",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `addr` (host:port) and returns the fingerprint of the certificate it presents
/// (what `vine remote add` shows the operator before trusting it).
pub fn fetch_fingerprint(addr: &str) -> Result<String, ClientError> {
    let c = Client::https(addr, "", None);
    let verifier = c.verifier();
    let r = c.request_with(&verifier, "GET", "/api/me", None);
    let seen = verifier.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match seen {
        Some(fp) => Ok(fp),
        None => Err(r.err().unwrap_or_else(|| ClientError::Protocol {
            path: PathBuf::from(addr),
            problem: "no certificate was presented".into(),
        })),
    }
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

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

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
    /// A client for the daemon listening on the Unix socket `path`.
    pub fn new(path: &Path) -> Client {
        Client { path: path.to_path_buf(), target: Target::Unix(path.to_path_buf()) }
    }

    /// A client for a remote daemon at `addr` (host:port) whose certificate has `fingerprint`
    /// (empty: any, only to read the fingerprint), sending `token`.
    pub fn https(addr: &str, fingerprint: &str, token: Option<&str>) -> Client {
        Client {
            path: PathBuf::from(format!("https://{addr}")),
            target: Target::Https {
                addr: addr.to_string(),
                fingerprint: fingerprint.to_string(),
                token: token.map(String::from),
            },
        }
    }

    /// A TLS client configuration that trusts only the certificate of SHA-256 `fingerprint`
    /// (for the async side: a console relayed from another host of the pool).
    pub(crate) fn pinned_config(fingerprint: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        let verifier = std::sync::Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider: std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            seen: std::sync::Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(std::sync::Arc::new(config))
    }

    fn verifier(&self) -> std::sync::Arc<Pinned> {
        let fingerprint = match &self.target {
            Target::Https { fingerprint, .. } => fingerprint.clone(),
            Target::Unix(_) => String::new(),
        };
        std::sync::Arc::new(Pinned {
            fingerprint,
            provider: std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            seen: std::sync::Mutex::new(None),
        })
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let v = self.verifier();
        self.request_with(&v, method, target, body)
    }

    /// A connection to the daemon (TLS for a remote one).
    fn connect(&self, verifier: &std::sync::Arc<Pinned>) -> Result<Box<dyn ReadWrite>, ClientError> {
        self.connect_with(verifier, false)
    }

    /// [`Client::connect`]; `handshake`: the TLS handshake is done now rather than with the
    /// first write.
    fn connect_with(
        &self,
        verifier: &std::sync::Arc<Pinned>,
        handshake: bool,
    ) -> Result<Box<dyn ReadWrite>, ClientError> {
        let path = self.path.clone();
        let io = |source| ClientError::Io { path: path.clone(), source };
        let proto = |problem: String| ClientError::Protocol { path: self.path.clone(), problem };
        let connect = |source| ClientError::Connect { path: self.path.clone(), source };
        Ok(match &self.target {
            Target::Unix(p) => Box::new(UnixStream::connect(p).map_err(connect)?),
            Target::Https { addr, .. } => {
                let tcp = std::net::TcpStream::connect(addr).map_err(connect)?;
                tcp.set_read_timeout(Some(std::time::Duration::from_secs(300))).map_err(io)?;
                let config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| proto(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
                    .with_no_client_auth();
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| proto(e.to_string()))?;
                let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
                    .map_err(|e| proto(e.to_string()))?;
                let mut tcp = tcp;
                if handshake {
                    while conn.is_handshaking() {
                        conn.complete_io(&mut tcp).map_err(io)?;
                    }
                }
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        })
    }

    /// The request line and the headers every request carries (no blank line).
    fn head(&self, method: &str, target: &str) -> String {
        let auth = match &self.target {
            Target::Https { token: Some(t), .. } => format!("Authorization: Bearer {t}\r\n"),
            _ => String::new(),
        };
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n{auth}")
    }

    /// Sends `file`'s bytes as the body of a PUT to `target`, streamed; `progress(sent, total)`
    /// after each piece. Returns the status and JSON body of the answer.
    pub fn upload(
        &self,
        target: &str,
        file: &Path,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(u16, Value), ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let mut f = std::fs::File::open(file)
            .map_err(|source| ClientError::Io { path: file.to_path_buf(), source })?;
        let total =
            f.metadata().map_err(|source| ClientError::Io { path: file.to_path_buf(), source })?.len();
        let v = self.verifier();
        let mut s = self.connect(&v)?;
        let head = format!(
            "{}Content-Type: application/octet-stream\r\nContent-Length: {total}\r\nExpect: 100-continue\r\n\r\n",
            self.head("PUT", target)
        );
        s.write_all(head.as_bytes()).map_err(io)?;
        s.flush().map_err(io)?;
        // A server that refuses (403, 409) answers before it asks for the body: nothing is sent.
        if let Some(answer) = self.await_continue(&mut *s)? {
            return Ok(answer);
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        loop {
            let n =
                f.read(&mut buf).map_err(|source| ClientError::Io { path: file.to_path_buf(), source })?;
            if n == 0 {
                break;
            }
            // A server that fails while reading (a full disk) may close before the body is in:
            // its answer then says why.
            if s.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            progress(sent, total);
        }
        let _ = s.flush();
        let raw = read_answer(&mut *s).map_err(io)?;
        parse_answer(&raw).map_err(|problem| ClientError::Protocol { path: self.path.clone(), problem })
    }

    /// GETs `target` and streams a 200 answer's body into `out`; `progress(received, total)`
    /// after each piece. Another status is [`ClientError::Refused`] with the server's reason.
    pub fn download(
        &self,
        target: &str,
        out: &mut dyn Write,
        progress: &dyn Fn(u64, u64),
    ) -> Result<u64, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let proto = |problem: String| ClientError::Protocol { path: self.path.clone(), problem };
        let v = self.verifier();
        let mut s = self.connect(&v)?;
        s.write_all(format!("{}\r\n", self.head("GET", target)).as_bytes()).map_err(io)?;
        s.flush().map_err(io)?;
        let head =
            read_head(&mut *s).map_err(io)?.ok_or_else(|| proto("the answer ended in its headers".into()))?;
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| proto("no status".into()))?;
        if status != 200 {
            let mut rest = head;
            rest.extend(read_answer(&mut *s).map_err(io)?);
            let (status, v) = parse_answer(&rest).map_err(proto)?;
            let message =
                v["error"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}: {v}"));
            return Err(ClientError::Refused { status, message });
        }
        let total = text
            .lines()
            .filter_map(|l| l.strip_prefix("content-length:"))
            .find_map(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| proto("a download without a Content-Length".into()))?;
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while got < total {
            let want = buf.len().min((total - got) as usize);
            let n = match s.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            out.write_all(&buf[..n]).map_err(io)?;
            got += n as u64;
            progress(got, total);
        }
        if got < total {
            return Err(proto(format!("the download ended after {got} of its {total} bytes")));
        }
        Ok(got)
    }

    fn request_with(
        &self,
        verifier: &std::sync::Arc<Pinned>,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let payload = body.map(|b| b.to_string().into_bytes());
        self.send(verifier, method, target, payload.as_deref().map(|p| ("application/json", p)))
    }

    /// Sends any bytes as a body (`content type`, bytes): for tests of what the server does with
    /// bodies that are not what it expects.
    pub fn request_raw(
        &self,
        method: &str,
        target: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Value), ClientError> {
        let v = self.verifier();
        self.send(&v, method, target, body)
    }

    fn send(
        &self,
        verifier: &std::sync::Arc<Pinned>,
        method: &str,
        target: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Value), ClientError> {
        let mut s = self.connect(verifier)?;
        self.send_on(&mut *s, method, target, body)
    }

    /// A connection opened now (for HTTPS, with its TLS handshake done) for one request sent
    /// later: where the wait for the answer matters more than the time to get ready (the last
    /// call of a live migration's switchover, while the guest is paused).
    pub fn open(&self) -> Result<Open, ClientError> {
        let v = self.verifier();
        let s = self.connect_with(&v, true)?;
        Ok(Open { client: self.clone(), stream: s, opened: std::time::Instant::now() })
    }

    fn send_on(
        &self,
        s: &mut dyn ReadWrite,
        method: &str,
        target: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Value), ClientError> {
        let path = self.path.clone();
        let io = |source| ClientError::Io { path: path.clone(), source };
        let proto = |problem: String| ClientError::Protocol { path: self.path.clone(), problem };
        let mut head = self.head(method, target);
        if let Some((kind, payload)) = body {
            head.push_str(&format!("Content-Type: {kind}\r\nContent-Length: {}\r\n", payload.len()));
        } else if method != "GET" && method != "DELETE" {
            head.push_str("Content-Length: 0\r\n");
        }
        let payload = body.map(|b| b.1).unwrap_or_default();
        if payload.len() > EXPECT_CONTINUE_OVER {
            // A large body waits for the server's go-ahead: one that refuses early (401, 403)
            // closes with the body unread, and the bytes still on their way would meet a reset
            // instead of its answer.
            head.push_str("Expect: 100-continue\r\n\r\n");
            s.write_all(head.as_bytes()).map_err(io)?;
            s.flush().map_err(io)?;
            if let Some(answer) = self.await_continue(s)? {
                return Ok(answer);
            }
            s.write_all(payload).map_err(io)?;
        } else {
            head.push_str("\r\n");
            // One write: the server then has the whole request at its first read.
            let mut all = head.into_bytes();
            all.extend_from_slice(payload);
            s.write_all(&all).map_err(io)?;
        }
        s.flush().map_err(io)?;
        let raw = read_answer(&mut *s).map_err(io)?;
        parse_answer(&raw).map_err(proto)
    }

    /// After a head sent with `Expect: 100-continue`: `None` when the server asks for the body,
    /// or its final answer when it decided without it.
    fn await_continue(&self, s: &mut dyn ReadWrite) -> Result<Option<(u16, Value)>, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let proto = |problem: String| ClientError::Protocol { path: self.path.clone(), problem };
        let head = read_head(&mut *s).map_err(io)?.ok_or_else(|| proto("no answer".into()))?;
        let status = head.split(|&b| b == b' ').nth(1).and_then(|c| std::str::from_utf8(c).ok());
        if status == Some("100") {
            return Ok(None);
        }
        let mut rest = std::io::Read::chain(&head[..], &mut *s);
        let raw = read_answer(&mut rest).map_err(io)?;
        parse_answer(&raw).map(Some).map_err(proto)
    }

    /// Like [`Client::request`], turning a non-2xx answer into [`ClientError::Refused`].
    pub fn call(&self, method: &str, target: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        refused_unless_2xx(self.request(method, target, body)?)
    }
}

fn refused_unless_2xx((status, v): (u16, Value)) -> Result<Value, ClientError> {
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let message = v["error"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}: {v}"));
    Err(ClientError::Refused { status, message })
}

/// A connection [`Client::open`] made ready, for one request.
pub struct Open {
    client: Client,
    stream: Box<dyn ReadWrite>,
    opened: std::time::Instant,
}

impl Open {
    /// How long a connection may wait for its request: the server closes one that sends no
    /// request head within [`crate::serve::HEADER_TIMEOUT`]; past this, a new one is opened.
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(20);

    /// [`Client::request`] on this connection, or on a new one if this one waited too long.
    pub fn request(
        mut self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        if self.opened.elapsed() > Self::FRESH {
            return self.client.request(method, target, body);
        }
        let payload = body.map(|b| b.to_string().into_bytes());
        let body = payload.as_deref().map(|p| ("application/json", p));
        self.client.send_on(&mut *self.stream, method, target, body)
    }
}

/// Bodies above this many bytes are sent only once the server asks for them.
const EXPECT_CONTINUE_OVER: usize = 64 << 10;

/// One answer's head, up to and with its blank line (read byte by byte: nothing after it is
/// taken); `None` when the connection ends first.
fn read_head(s: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the answer's headers are over 64 KiB",
            ));
        }
        match s.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => head.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(head))
}

/// Reads one HTTP answer: up to the end of its body when a Content-Length gives it (the client
/// need not wait for the server to close the connection), otherwise to the end of the stream. An
/// answer that ends before its Content-Length is an error saying how much came.
fn read_answer(s: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    let mut head_seen = false;
    // Where the body ends, when a Content-Length says so.
    let mut want: Option<usize> = None;
    loop {
        if let Some(w) = want.filter(|&w| raw.len() >= w) {
            raw.truncate(w);
            return Ok(raw);
        }
        let n = match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A TLS peer closing without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        };
        raw.extend_from_slice(&chunk[..n]);
        if !head_seen {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .filter_map(|l| l.strip_prefix("content-length:"))
                    .find_map(|v| v.trim().parse::<usize>().ok());
                // Without a length (chunked, or none given) the end of the stream ends the body.
                want = length.map(|l| (end + 4).saturating_add(l));
                head_seen = true;
            }
        }
    }
    match want {
        Some(w) if raw.len() < w => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the answer ended after {} of its {w} bytes (Content-Length)", raw.len()),
        )),
        _ => Ok(raw),
    }
}

/// The status and JSON body (`Null` when empty, a string when not JSON) of a whole answer.
fn parse_answer(raw: &[u8]) -> Result<(u16, Value), String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let lower = head.to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", head.lines().next()))?;
    if lower.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
        body = decode_chunked(&body).ok_or("bad chunked body")?;
    }
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else if lower.contains("content-type: application/json") {
        serde_json::from_slice(&body).map_err(|e| e.to_string())?
    } else {
        Value::String(String::from_utf8_lossy(&body).into_owned())
    };
    Ok((status, value))
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

    /// A reader that hands out its parts one read at a time and then fails: reading past the
    /// answer would show.
    struct Parts(Vec<&'static [u8]>);
    impl Read for Parts {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("read past the end of the answer"));
            }
            let p = self.0.remove(0);
            buf[..p.len()].copy_from_slice(p);
            Ok(p.len())
        }
    }

    #[test]
    fn an_answer_with_a_length_is_read_to_its_end_and_no_further() {
        let mut s = Parts(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n", b"\r\n{\"a\"", b":1}"]);
        assert_eq!(read_answer(&mut s).unwrap(), b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        // Without a length, the end of the stream ends it.
        let mut s = Parts(vec![b"HTTP/1.1 200 OK\r\n\r\nab", b"cd", b""]);
        assert_eq!(read_answer(&mut s).unwrap(), b"HTTP/1.1 200 OK\r\n\r\nabcd");
        // A stream that ends early is an error saying so.
        let mut s = Parts(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab", b""]);
        let e = read_answer(&mut s).unwrap_err().to_string();
        assert_eq!(e, "the answer ended after 41 of its 49 bytes (Content-Length)");
        // A length no answer could have is not an overflow.
        let mut s = Parts(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n{}", b""]);
        assert!(read_answer(&mut s).unwrap_err().to_string().contains("ended after"));
        // Bytes after the length are not the body's.
        let mut s = Parts(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}junk",
        ]);
        assert_eq!(parse_answer(&read_answer(&mut s).unwrap()).unwrap(), (200, serde_json::json!({})));
    }

    /// A server on a Unix socket that reads one request's head, then does `then` with the
    /// stream and the head; the test gets what the client made of its answer.
    fn one_request(
        then: impl FnOnce(&mut UnixStream, &str) + Send + 'static,
        body: &[u8],
    ) -> Result<(u16, Value), ClientError> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let head = String::from_utf8(read_head(&mut s).unwrap().unwrap()).unwrap();
            then(&mut s, &head);
        });
        let r = Client::new(&sock).request_raw("PUT", "/x", Some(("application/octet-stream", body)));
        server.join().unwrap();
        r
    }

    #[test]
    fn a_large_body_waits_for_the_go_ahead_and_a_refusal_before_it_is_the_answer() {
        let big = vec![7u8; 1 << 20];
        // Refused at the head: the server closes without reading a byte of the body, and the
        // client reports its answer, not a broken pipe.
        let r = one_request(
            |s, head| {
                assert!(head.to_ascii_lowercase().contains("expect: 100-continue"), "{head}");
                let body = r#"{"error":"no"}"#;
                let answer = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(answer.as_bytes()).unwrap();
            },
            &big,
        );
        assert_eq!(r.unwrap(), (403, serde_json::json!({"error": "no"})));
        // Asked for: the whole body follows, then the final answer is read.
        let r = one_request(
            |s, _| {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                let mut got = vec![0u8; 1 << 20];
                s.read_exact(&mut got).unwrap();
                assert!(got.iter().all(|&b| b == 7));
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            },
            &big,
        );
        assert_eq!(r.unwrap(), (204, Value::Null));
        // A small body goes with its head, unasked.
        let r = one_request(
            |s, head| {
                assert!(!head.to_ascii_lowercase().contains("expect"), "{head}");
                let mut got = [0u8; 3];
                s.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"abc");
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            },
            b"abc",
        );
        assert_eq!(r.unwrap(), (204, Value::Null));
    }

    proptest::proptest! {
        /// Whatever a server sends, in whatever pieces: an answer or an error, never a panic.
        #[test]
        fn any_answer_in_any_pieces_is_read_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            head in proptest::sample::select(vec![
                "", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "HTTP/1.1 404 x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n",
                "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            ]),
        ) {
            let mut all = head.as_bytes().to_vec();
            all.extend_from_slice(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(all.len())).collect();
            cuts.sort_unstable();
            let mut pieces: Vec<&'static [u8]> = Vec::new();
            let all: &'static [u8] = Box::leak(all.into_boxed_slice());
            let mut at = 0;
            for c in cuts.into_iter().chain([all.len()]) {
                if c > at {
                    pieces.push(&all[at..c]);
                    at = c;
                }
            }
            pieces.push(b"");
            if let Ok(raw) = read_answer(&mut Parts(pieces)) {
                let _ = parse_answer(&raw);
            }
        }
    }
}
