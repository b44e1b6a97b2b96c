//! `perf http-backend`: a small HTTP/1.1 server standing in for an unmodified backend.
//!
//! Every request gets `200` and `{"backend":NAME,"client":"IP:PORT","local":"IP:PORT"}`, where
//! `client` is the TCP peer the server saw — behind the host agent, the client's real address.
//! `/healthz` answers `200 ok`, or `503` while `--fail-file` exists. Keep-alive unless the
//! client sends `Connection: close`; a malformed request gets `400` and the connection closes; a
//! connection silent for [`IDLE_TIMEOUT`] is closed quietly.
//! `/stream?bytes=N&rate=BPS` answers a body of N bytes (at most [`MAX_STREAM_BYTES`]) written
//! at about BPS bytes per second (0 or absent: as fast as the connection takes them): a download
//! for the lab's imbalance round. Its first line is `{"backend":NAME}` and the rest is filler,
//! so the client learns which backend streams to it.
//! A thread per connection (at most [`MAX_CONNECTIONS`]; more are refused by closing them).

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::read_head;

/// The largest body `/stream` sends.
pub const MAX_STREAM_BYTES: u64 = 1 << 34;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a keep-alive connection may stay silent before the server closes it (nginx's
/// default is 75 s): longer than any pause of the lab's soaks.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server counted.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests answered.
    pub requests: AtomicUsize,
}

/// Serves on `listener` until `stop` is set.
pub fn serve(
    listener: TcpListener,
    name: String,
    fail_file: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let name = Arc::new(name);
    let fail_file = Arc::new(fail_file);
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    continue;
                }
                stats.connections.fetch_add(1, Ordering::Relaxed);
                active.fetch_add(1, Ordering::Relaxed);
                let (name, fail_file, active, stats, stop) = (
                    Arc::clone(&name),
                    Arc::clone(&fail_file),
                    Arc::clone(&active),
                    Arc::clone(&stats),
                    Arc::clone(&stop),
                );
                std::thread::spawn(move || {
                    let _ = handle(conn, &name, fail_file.as_deref(), &stats, &stop);
                    active.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    Ok(())
}

fn handle(
    conn: TcpStream,
    name: &str,
    fail_file: Option<&Path>,
    stats: &ServerStats,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IDLE_TIMEOUT))?;
    // A client that stops reading a stream does not hold the thread for ever.
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    conn.set_nodelay(true)?;
    let peer = conn.peer_addr()?;
    let local = conn.local_addr()?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) {
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            // Idle past the keep-alive timeout: closed quietly, as real servers do. (Answering
            // it with a 400, as this server once did after 10 s, broke the lab's idle
            // second-chance cases whose connections wait longer than that before speaking.)
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(());
            }
            Err(_) => {
                let _ = writer.write_all(response(400, "bad request\n", true).as_bytes());
                return Ok(());
            }
        };
        if let Some(n) = head.content_length {
            std::io::copy(&mut (&mut reader).take(n as u64), &mut std::io::sink())?;
        }
        let mut parts = head.first_line.split_whitespace();
        let (Some(_method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            let _ = writer.write_all(response(400, "bad request line\n", true).as_bytes());
            return Ok(());
        };
        if !version.starts_with("HTTP/1.") {
            let _ = writer.write_all(response(400, "HTTP/1.x only\n", true).as_bytes());
            return Ok(());
        }
        let close = head.close || version == "HTTP/1.0";
        if let Some(query) = path.strip_prefix("/stream") {
            let Some((bytes, rate)) = stream_query(query) else {
                let _ = writer
                    .write_all(response(400, "stream: bytes=N[&rate=BPS]\n", true).as_bytes());
                return Ok(());
            };
            stats.requests.fetch_add(1, Ordering::Relaxed);
            stream(&mut writer, name, bytes, rate, close, stop)?;
            if close {
                return Ok(());
            }
            continue;
        }
        let reply = if path == "/healthz" {
            if fail_file.is_some_and(Path::exists) {
                response(503, "failing (fail file present)\n", close)
            } else {
                response(200, "ok\n", close)
            }
        } else {
            let body = serde_json::json!({
                "backend": name,
                "client": peer.to_string(),
                "local": local.to_string(),
            })
            .to_string();
            response(200, &body, close)
        };
        // Counted before the answer leaves, so a client that has its answer sees it counted.
        stats.requests.fetch_add(1, Ordering::Relaxed);
        writer.write_all(reply.as_bytes())?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// `?bytes=N&rate=BPS` → (N, BPS); `None` when `bytes` is missing or a value does not parse.
fn stream_query(query: &str) -> Option<(u64, u64)> {
    let query = query.strip_prefix('?')?;
    let (mut bytes, mut rate) = (None, 0u64);
    for pair in query.split('&') {
        match pair.split_once('=')? {
            ("bytes", v) => bytes = Some(v.parse::<u64>().ok()?.min(MAX_STREAM_BYTES)),
            ("rate", v) => rate = v.parse().ok()?,
            _ => {}
        }
    }
    Some((bytes?, rate))
}

/// Writes a `/stream` answer: the head, then `bytes` of body paced to `rate` bytes per second.
fn stream(
    w: &mut TcpStream,
    name: &str,
    bytes: u64,
    rate: u64,
    close: bool,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    const CHUNK: usize = 16 * 1024;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\nContent-Type: application/octet-stream\r\nConnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" },
    );
    w.write_all(head.as_bytes())?;
    let mut first = format!("{}\n", serde_json::json!({ "backend": name })).into_bytes();
    first.truncate(bytes as usize);
    w.write_all(&first)?;
    let filler = [b'x'; CHUNK];
    let started = Instant::now();
    let mut sent = first.len() as u64;
    while sent < bytes {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopping"));
        }
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        w.write_all(&filler[..n])?;
        sent += n as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}

fn response(status: u16, body: &str, close: bool) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        503 => "Service Unavailable",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: {}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        },
        if close { "close" } else { "keep-alive" },
    )
}
