//! A recording upstream: raw TCP, keeps every byte received per connection, and answers each
//! complete HTTP/1.1 request with a fixed `200` so forwarded requests can be compared
//! byte-for-byte and rejected ones proven to have sent nothing.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{dechunk_len, find};
use crate::{Error, Result};

/// Body of the fixed reply.
pub const REPLY_BODY: &[u8] = b"{\"status\":\"recorded\"}";

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request line and headers, as received (without the blank line).
    pub head: String,
    /// The body bytes (de-chunked if Envoy sent chunked).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Request line, e.g. `POST /webhook HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// Values of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    /// Raw bytes per connection, in accept order.
    connections: Vec<Vec<u8>>,
    requests: Vec<RecordedRequest>,
}

/// The running upstream; its accept thread stops on drop.
pub struct RecordingUpstream {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingUpstream {
    /// Binds 127.0.0.1 on a free port and starts accepting.
    pub fn start() -> Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds `addr` (a fixed port where the test owns the network, e.g. a private network
    /// namespace) and starts accepting.
    pub fn start_on(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Io("bind upstream", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io("upstream address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Io("nonblocking", e))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || accept_loop(&listener, &s2, &stop2));
        Ok(RecordingUpstream {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Address Envoy's cluster points at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Complete requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    /// Every byte received so far on any connection (request heads included).
    pub fn total_bytes(&self) -> usize {
        self.shared
            .lock()
            .map(|s| s.connections.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Raw bytes per connection.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.shared
            .lock()
            .map(|s| s.connections.clone())
            .unwrap_or_default()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Mutex<Shared>>, stop: &Arc<AtomicBool>) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let index = match shared.lock() {
                    Ok(mut s) => {
                        s.connections.push(Vec::new());
                        s.connections.len() - 1
                    }
                    Err(_) => return,
                };
                let (shared, stop) = (shared.clone(), stop.clone());
                workers.push(std::thread::spawn(move || {
                    serve(stream, index, &shared, &stop)
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn serve(mut stream: TcpStream, index: usize, shared: &Arc<Mutex<Shared>>, stop: &Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Ok(mut s) = shared.lock()
                    && let Some(c) = s.connections.get_mut(index)
                {
                    c.extend_from_slice(&buf[..n]);
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some((req, used)) = parse_request(&pending) {
                    pending.drain(..used);
                    if let Ok(mut s) = shared.lock() {
                        s.requests.push(req);
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        REPLY_BODY.len()
                    );
                    if stream
                        .write_all(reply.as_bytes())
                        .and_then(|()| stream.write_all(REPLY_BODY))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// A complete request at the start of `buf`, and how many bytes it used.
fn parse_request(buf: &[u8]) -> Option<(RecordedRequest, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = &buf[end + 4..];
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let (body, used) = dechunk_len(rest)?;
        return Some((RecordedRequest { head, body }, end + 4 + used));
    }
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = rest.get(..len)?.to_vec();
    Some((RecordedRequest { head, body }, end + 4 + len))
}
