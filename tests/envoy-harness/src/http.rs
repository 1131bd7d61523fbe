//! A tiny raw HTTP/1.1 client: the tests need exact control of the bytes (chunked encoding,
//! bodies split over many writes, lying content-length) that a real client library hides.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Error, Result};

/// Bound on any single read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// First header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    send(
        addr,
        &[format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes()],
    )
}

/// A request head: request line, `host`, `connection: close`, the given headers, blank line.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// `body` in chunked encoding, cut into chunks of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Connects to `addr` (reads time out after `read_timeout`) and sends `parts` as separate
/// writes, flushing and pausing briefly between them so Envoy sees separate reads. A write that
/// fails because Envoy already answered and closed ends the writing, not the exchange.
fn connect_and_write(
    addr: SocketAddr,
    parts: &[&[u8]],
    read_timeout: Duration,
) -> Result<TcpStream> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| Error::Io("connect", e))?;
    s.set_read_timeout(Some(read_timeout))
        .map_err(|e| Error::Io("set timeout", e))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| Error::Io("set timeout", e))?;
    s.set_nodelay(true)
        .map_err(|e| Error::Io("set nodelay", e))?;
    for (i, p) in parts.iter().enumerate() {
        if s.write_all(p).and_then(|()| s.flush()).is_err() {
            break;
        }
        if i + 1 < parts.len() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(s)
}

/// Sends `parts` as separate writes (flushing and pausing briefly between them so Envoy sees
/// separate reads), then reads the response until the connection closes. A write that fails
/// because Envoy already answered and closed is not an error: the response is read anyway.
pub fn send(addr: SocketAddr, parts: &[&[u8]]) -> Result<Response> {
    let mut s = connect_and_write(addr, parts, IO_TIMEOUT)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(Error::Io("read response", e)),
            Err(_) => break, // reset after a complete reply
        }
    }
    parse_response(&raw).ok_or_else(|| {
        Error::Io(
            "parse response",
            std::io::Error::other(String::from_utf8_lossy(&raw).into_owned()),
        )
    })
}

/// Like [`send`], but returns the raw bytes received until the connection closed (or went
/// quiet for [`IO_TIMEOUT`]): for pipelined requests, interim `100 Continue` replies and
/// replies that are not HTTP at all. Parse them with [`parse_responses`].
pub fn send_raw(addr: SocketAddr, parts: &[&[u8]]) -> Result<Vec<u8>> {
    send_raw_until(addr, parts, IO_TIMEOUT, |_| false)
}

/// Like [`send_raw`], reading until the connection closes, stays silent for `quiet`, or
/// `done` says the bytes so far are enough (e.g. `|raw| complete_responses(raw) == 2`: Envoy
/// keeps a connection open for a second after a local reply, waiting for the client to close).
pub fn send_raw_until(
    addr: SocketAddr,
    parts: &[&[u8]],
    quiet: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>> {
    let mut s = connect_and_write(addr, parts, quiet)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !done(&raw) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    Ok(raw)
}

/// How many final (non-1xx) responses `raw` holds in full, bodies included.
pub fn complete_responses(raw: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = raw;
    while let Some((r, used)) = parse_one(rest, false) {
        rest = &rest[used..];
        if !(100..200).contains(&r.status) {
            n += 1;
        }
    }
    n
}

/// Every response in `raw`, in order, without interim (1xx) ones. A last response whose body
/// is shorter than its `content-length` (the reply to a HEAD) is returned with what arrived;
/// one whose head is incomplete is left out.
pub fn parse_responses(raw: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some((r, used)) = parse_one(rest, true) {
        rest = &rest[used..];
        if !(100..200).contains(&r.status) {
            out.push(r);
        }
    }
    out
}

/// One response at the start of `raw` and the bytes it used: framed by `content-length`,
/// chunked encoding, or (neither, final reply) the end of the data. `cut_ok`: a body shorter
/// than its `content-length` at the end of the data is returned as it is.
fn parse_one(raw: &[u8], cut_ok: bool) -> Option<(Response, usize)> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk_len(rest)?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        // Shorter than declared only at the end of the data: a HEAD reply (no body), or a cut.
        if !cut_ok && rest.len() < len {
            return None;
        }
        let len = len.min(rest.len());
        (rest[..len].to_vec(), len)
    } else if cut_ok {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((
        Response {
            status,
            headers,
            body,
        },
        end + 4 + used,
    ))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let is_chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if is_chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body (no trailers expected); `None` while incomplete.
pub fn dechunk(buf: &[u8]) -> Option<Vec<u8>> {
    dechunk_len(buf).map(|(body, _)| body)
}

/// Decodes a chunked body and says how many bytes of `buf` it used (terminator included).
pub fn dechunk_len(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let eol = pos + find(&buf[pos..], b"\r\n")?;
        let size_txt = std::str::from_utf8(&buf[pos..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        pos = eol + 2;
        if size == 0 {
            // Optional trailers end with an empty line.
            let end = pos + find(&buf[pos..], b"\r\n")?;
            if end == pos {
                return Some((body, pos + 2));
            }
            let tend = pos + find(&buf[pos..], b"\r\n\r\n")?;
            return Some((body, tend + 4));
        }
        body.extend_from_slice(buf.get(pos..pos + size)?);
        pos += size + 2;
        if buf.len() < pos {
            return None;
        }
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The JSON body of a reply (a test failure when it is not JSON).
#[track_caller]
pub fn json_body(r: &Response) -> serde_json::Value {
    let parsed = serde_json::from_slice(&r.body);
    assert!(
        parsed.is_ok(),
        "status {}, reply is not JSON: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    parsed.unwrap_or_default()
}

/// Asserts a JSON rejection in the replaced service's shape (`{"detail", "error_type",
/// "timestamp"}`, `application/json`) with this status and `error_type`; returns the body.
#[track_caller]
pub fn assert_rejected(r: &Response, status: u16, error_type: &str) -> serde_json::Value {
    let body = json_body(r);
    assert_eq!(r.status, status, "body: {body}");
    assert_eq!(body["error_type"], error_type, "body: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "body: {body}"
    );
    assert!(
        body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "body: {body}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    body
}
