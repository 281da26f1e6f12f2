//! The daemon's health probe and metrics endpoint.
//!
//! `GET /healthz` answers 200 while the scheduling loop has ticked recently
//! (it never sleeps longer than `schedule::MAX_SLEEP`), 503 when it stalled;
//! `GET /metrics` serves the Prometheus exposition. Plain HTTP/1.1 on a
//! loopback address by default: two fixed routes do not justify a web stack.

use crate::metrics::Registry;
use crate::schedule::{DaemonStats, MAX_SLEEP};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How old the last tick may be before the daemon counts as stalled.
pub(crate) fn stall_after() -> Duration {
    MAX_SLEEP * 2 + Duration::from_secs(10)
}

fn health_body(stats: &DaemonStats) -> (u16, String) {
    let last = stats.last_tick_unix.load(Ordering::Relaxed) as i64;
    let age = chrono::Utc::now().timestamp() - last;
    let ok = last > 0 && age <= stall_after().as_secs() as i64;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "stalled" },
        "last_tick_age_seconds": age,
        "in_flight": stats.in_flight.load(Ordering::Relaxed),
        "fired": stats.fired.load(Ordering::Relaxed),
        "skipped_overlap": stats.skipped_overlap.load(Ordering::Relaxed),
        "missed": stats.missed.load(Ordering::Relaxed),
    });
    (if ok { 200 } else { 503 }, body.to_string())
}

fn daemon_metrics(stats: &DaemonStats) -> String {
    let mut out = String::new();
    for (name, help, v) in [
        (
            "lethe_daemon_fired_total",
            "Scheduled fires that started a run.",
            stats.fired.load(Ordering::Relaxed),
        ),
        (
            "lethe_daemon_skipped_overlap_total",
            "Fires skipped because the job's previous run was still in flight.",
            stats.skipped_overlap.load(Ordering::Relaxed),
        ),
        (
            "lethe_daemon_missed_total",
            "Fires missed while the daemon could not run (coalesced).",
            stats.missed.load(Ordering::Relaxed),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP lethe_daemon_in_flight Runs in flight.\n# TYPE lethe_daemon_in_flight gauge\nlethe_daemon_in_flight {}\n",
        stats.in_flight.load(Ordering::Relaxed)
    ));
    out
}

async fn answer(mut stream: TcpStream, stats: Arc<DaemonStats>, registry: Arc<Registry>) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/healthz" | "/livez" | "/readyz" => {
            let (s, b) = health_body(&stats);
            (s, "application/json", b)
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            format!("{}{}", registry.render(None), daemon_metrics(&stats)),
        ),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serve until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    stats: Arc<DaemonStats>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(answer(stream, stats.clone(), registry.clone()));
                }
            }
        }
    }
}

/// Why `lethe healthcheck` found the daemon unhealthy (printed after
/// `unhealthy: `; the exit code is 1 whichever it is).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The connection broke while asking or reading the answer.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} did not answer within 5 s")]
    Timeout(SocketAddr),
    /// An answer other than 200: its status line and body.
    #[error("{status}: {body}")]
    Unhealthy { status: String, body: String },
}

/// `lethe healthcheck`: `Ok(body)` on 200.
pub(crate) async fn probe(addr: SocketAddr) -> Result<String, ProbeError> {
    let io = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect { addr, source })?;
        s.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<String, ProbeError>(out)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| ProbeError::Timeout(addr))??;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    if response.starts_with("HTTP/1.1 200") {
        Ok(body)
    } else {
        Err(ProbeError::Unhealthy {
            status: response.lines().next().unwrap_or("no answer").to_string(),
            body,
        })
    }
}
