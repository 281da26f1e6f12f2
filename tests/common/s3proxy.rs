//! A small HTTP fault proxy between Lethe and moto, for the S3 fault tests.
//!
//! It listens on `127.0.0.1:0`, reads each request (head and body), and for
//! the requests a test chose answers `500 InternalError`, `503 SlowDown`,
//! resets the connection, answers slowly, or turns a `DeleteObjects` answer
//! into one with per-key errors (the refused keys are really kept: they are
//! taken out of the request moto sees). Everything else is forwarded to moto
//! unchanged, one upstream connection per request. It counts what it saw and
//! what it injected, so a test can check that every fault was met.
//!
//! It must never talk to anything but the loopback moto endpoint it was given.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The S3 operation a request is, as far as the faults care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    DeleteObjects,
    ListObjectsV2,
    ListObjectVersions,
    Other,
}

/// What to do to a chosen request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `500 InternalError`, nothing forwarded.
    Status500,
    /// `503 SlowDown`, nothing forwarded.
    SlowDown,
    /// Close the connection with a TCP reset before answering.
    Reset,
    /// Forward, but only after this long.
    Slow(Duration),
    /// `DeleteObjects` only: keys containing `needle` are refused with
    /// `code` in a 200 answer and kept; the others are deleted by moto.
    KeyErrors {
        needle: &'static str,
        code: &'static str,
    },
}

struct Planned {
    op: Op,
    fault: Fault,
    left: usize,
}

#[derive(Default)]
struct State {
    plan: Vec<Planned>,
    seen: BTreeMap<Op, u64>,
    injected: BTreeMap<String, u64>,
}

pub struct S3Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Proxy {
    /// Start in front of `upstream` (`http://127.0.0.1:5077`).
    pub async fn start(upstream: &str) -> S3Proxy {
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the moto endpoint is host:port on loopback");
        assert!(
            up.ip().is_loopback(),
            "the proxy only fronts a local server"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, up, st.clone()));
            }
        });
        S3Proxy { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Apply `fault` to the next `times` requests of `op`.
    pub fn inject(&self, op: Op, fault: Fault, times: usize) {
        self.state.lock().unwrap().plan.push(Planned {
            op,
            fault,
            left: times,
        });
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().injected.clone()
    }

    pub fn seen(&self, op: Op) -> u64 {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(&op)
            .copied()
            .unwrap_or(0)
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn op(&self) -> Op {
        let line = self.head.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
        match method {
            "POST" if has("delete") => Op::DeleteObjects,
            "GET" if has("versions") => Op::ListObjectVersions,
            "GET" if has("list-type") => Op::ListObjectsV2,
            _ => Op::Other,
        }
    }

    /// The head with `Connection: close` and, when the body was rewritten,
    /// its new length and no checksum of the old one.
    fn head_for_upstream(&self, new_len: Option<usize>) -> String {
        let mut out = String::new();
        for (i, line) in self.head.split("\r\n").enumerate() {
            if line.is_empty() {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if i > 0
                && (lower.starts_with("connection:")
                    || (new_len.is_some()
                        && (lower.starts_with("content-length:")
                            || lower.starts_with("content-md5:")
                            || lower.starts_with("x-amz-checksum-")
                            || lower.starts_with("x-amz-sdk-checksum-algorithm:"))))
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        if let Some(n) = new_len {
            out.push_str(&format!("Content-Length: {n}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read one HTTP message (head and body) from `r`; `None` at a clean EOF.
async fn read_message(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    until_eof: bool,
) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let chunked =
        header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let len: Option<usize> = header(&head, "content-length").and_then(|v| v.parse().ok());
    let mut chunk = [0u8; 16 * 1024];
    if let Some(len) = len {
        while buf.len() < len {
            let n = r.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf.drain(..len).collect();
        return Some(Request { head, body });
    }
    if chunked {
        // Kept raw (still chunked): forwarded as it came.
        loop {
            if let Some(i) = buf.windows(5).position(|w| w == b"0\r\n\r\n") {
                let body = buf.drain(..i + 5).collect();
                return Some(Request { head, body });
            }
            let n = r.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    if until_eof {
        loop {
            let n = r.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = std::mem::take(buf);
        return Some(Request { head, body });
    }
    Some(Request {
        head,
        body: Vec::new(),
    })
}

fn empty_delete_result() -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></DeleteResult>";
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_answer(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Split a `DeleteObjects` body: (`<Object>` elements kept in the request,
/// those refused), by whether the key contains `needle`.
fn split_objects(body: &str, needle: &str) -> (String, Vec<String>) {
    let mut kept = String::new();
    let mut refused = Vec::new();
    let mut rest = body;
    let mut prefix_done = false;
    let mut out_prefix = String::new();
    while let Some(start) = rest.find("<Object>") {
        if !prefix_done {
            out_prefix.push_str(&rest[..start]);
            prefix_done = true;
        }
        let end = rest[start..]
            .find("</Object>")
            .map(|e| start + e + 9)
            .unwrap();
        let obj = &rest[start..end];
        let key = obj
            .split_once("<Key>")
            .and_then(|(_, k)| k.split_once("</Key>"))
            .map(|(k, _)| k)
            .unwrap_or("");
        if key.contains(needle) {
            refused.push(obj.to_string());
        } else {
            kept.push_str(obj);
        }
        rest = &rest[end..];
    }
    (format!("{out_prefix}{kept}{rest}"), refused)
}

async fn forward(up: SocketAddr, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(up).await.ok()?;
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    Some(out)
}

/// Put `errors` (`<Error>` elements) into a DeleteResult answer, fixing its length.
fn add_errors(answer: &[u8], errors: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(answer).into_owned();
    let Some(split) = text.find("\r\n\r\n") else {
        return answer.to_vec();
    };
    let (head, body) = (&text[..split], &text[split + 4..]);
    let body = match body.rfind("</DeleteResult>") {
        Some(i) => format!("{}{errors}{}", &body[..i], &body[i..]),
        None => body.to_string(),
    };
    let mut new_head = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            continue;
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = new_head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

async fn serve(mut conn: TcpStream, up: SocketAddr, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    while let Some(req) = read_message(&mut conn, &mut buf, false).await {
        let op = req.op();
        let fault = {
            let mut st = state.lock().unwrap();
            *st.seen.entry(op).or_default() += 1;
            let f = st
                .plan
                .iter_mut()
                .find(|p| p.op == op && p.left > 0)
                .map(|p| {
                    p.left -= 1;
                    p.fault.clone()
                });
            if let Some(f) = &f {
                let name = match f {
                    Fault::Status500 => "500",
                    Fault::SlowDown => "503 SlowDown",
                    Fault::Reset => "reset",
                    Fault::Slow(_) => "slow",
                    Fault::KeyErrors { .. } => "key errors",
                };
                *st.injected.entry(name.to_string()).or_default() += 1;
            }
            f
        };
        let answer = match fault {
            Some(Fault::Status500) => error_answer("500 Internal Server Error", "InternalError"),
            Some(Fault::SlowDown) => error_answer("503 Slow Down", "SlowDown"),
            Some(Fault::Reset) => {
                // SO_LINGER 0 turns the close into a TCP reset, which is the
                // point (the blocking-on-drop concern does not apply at 0).
                #[allow(deprecated)]
                let _ = conn.set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                match forward(up, &req.head_for_upstream(None), &req.body).await {
                    Some(a) => a,
                    None => return,
                }
            }
            Some(Fault::KeyErrors { needle, code }) => {
                let body = String::from_utf8_lossy(&req.body).into_owned();
                let (kept, refused) = split_objects(&body, needle);
                let a = if kept.contains("<Object>") {
                    match forward(
                        up,
                        &req.head_for_upstream(Some(kept.len())),
                        kept.as_bytes(),
                    )
                    .await
                    {
                        Some(a) => a,
                        None => return,
                    }
                } else {
                    // Every key refused: S3 would still answer 200 (moto
                    // refuses an empty Delete, so answer for it).
                    empty_delete_result()
                };
                let errors: String = refused
                    .iter()
                    .map(|o| {
                        let inner = o
                            .trim_start_matches("<Object>")
                            .trim_end_matches("</Object>");
                        format!(
                            "<Error>{inner}<Code>{code}</Code><Message>injected</Message></Error>"
                        )
                    })
                    .collect();
                add_errors(&a, &errors)
            }
            None => match forward(up, &req.head_for_upstream(None), &req.body).await {
                Some(a) => a,
                None => return,
            },
        };
        if conn.write_all(&answer).await.is_err() {
            return;
        }
        let close = {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(4096)]);
            let head = text.split("\r\n\r\n").next().unwrap_or("");
            header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
        };
        if close {
            return;
        }
    }
}
