//! A TCP fault proxy for tests: sits between Lethe and a database server on
//! `127.0.0.1:0` and, on the test's command, cuts every open connection,
//! stalls traffic, or refuses new connections for a while (what a failover
//! looks like from the client). Plain threads and `std::net`: the test
//! thread blocks on the `lethe` child process, so the proxy must not share
//! its runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Default)]
struct Shared {
    /// New connections are dropped at once until this instant (ms).
    refuse_until: AtomicU64,
    refuse_forever: AtomicBool,
    /// Traffic waits until this instant (ms).
    stall_until: AtomicU64,
    /// When a byte last went through (ms).
    last_activity: AtomicU64,
    /// Both sockets of every open connection, to cut them.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    /// Armed: the next client message holding `COMMIT` reaches the server,
    /// and its answer never comes back (every connection is cut).
    lose_commit: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listen on 127.0.0.1:0 and forward to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let target = target.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let refusing = s.refuse_forever.load(Ordering::SeqCst)
                    || now_ms() < s.refuse_until.load(Ordering::SeqCst);
                if refusing {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                s.open
                    .lock()
                    .unwrap()
                    .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                for (from, to, upstream) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, to, upstream, &s));
                }
            }
        });
        Proxy { port, shared }
    }

    /// `url` with `:<port>` (the server's) replaced by the proxy's port.
    pub fn url(&self, url: &str, server_port: u16) -> String {
        let from = format!(":{server_port}/");
        assert!(url.contains(&from), "{url} has no {from}");
        url.replacen(&from, &format!(":{}/", self.port), 1)
    }

    /// Close both ends of every open connection.
    pub fn cut_all(&self) {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap());
        for (a, b) in open {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
            self.shared.cut.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Cut every connection once no byte has gone through for `idle` (the
    /// client is between two transactions), waiting at most `max`.
    pub fn cut_when_idle(&self, idle: Duration, max: Duration) {
        let start = Instant::now();
        while start.elapsed() < max {
            let quiet = now_ms().saturating_sub(self.shared.last_activity.load(Ordering::SeqCst));
            if quiet >= idle.as_millis() as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.cut_all();
    }

    /// Drop every new connection for `d`.
    pub fn refuse_for(&self, d: Duration) {
        self.shared
            .refuse_until
            .store(now_ms() + d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Drop every new connection from now on.
    pub fn refuse_forever(&self) {
        self.shared.refuse_forever.store(true, Ordering::SeqCst);
    }

    /// Let the next `COMMIT` reach the server and lose its answer: traffic
    /// is held, the server is given 200 ms to commit, then every connection
    /// is cut. The client cannot know whether it committed.
    pub fn lose_next_commit_answer(&self) {
        self.shared.lose_commit.store(true, Ordering::SeqCst);
    }

    /// Accept new connections again.
    pub fn accept_again(&self) {
        self.shared.refuse_forever.store(false, Ordering::SeqCst);
        self.shared.refuse_until.store(0, Ordering::SeqCst);
    }

    /// Hold every byte for `d`.
    pub fn stall_for(&self, d: Duration) {
        self.shared
            .stall_until
            .store(now_ms() + d.as_millis() as u64, Ordering::SeqCst);
    }

    /// (accepted, refused, cut) connections so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.shared.accepted.load(Ordering::SeqCst),
            self.shared.refused.load(Ordering::SeqCst),
            self.shared.cut.load(Ordering::SeqCst),
        )
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, upstream: bool, s: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream
            && buf[..n]
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"COMMIT"))
            && s.lose_commit.swap(false, Ordering::SeqCst)
        {
            // Hold the answer, let the commit through, then cut everything.
            s.stall_until.store(u64::MAX, Ordering::SeqCst);
            let _ = to.write_all(&buf[..n]);
            std::thread::sleep(Duration::from_millis(200));
            let open = std::mem::take(&mut *s.open.lock().unwrap());
            for (a, b) in open {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
                s.cut.fetch_add(1, Ordering::SeqCst);
            }
            s.stall_until.store(0, Ordering::SeqCst);
            break;
        }
        while now_ms() < s.stall_until.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.last_activity.store(now_ms(), Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
