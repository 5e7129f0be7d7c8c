//! The metrics and admin endpoint: a small HTTP/1.1 server on a thread of its own (`metrics`),
//! never on a shard. `GET /metrics` answers the Prometheus text format; `POST
//! /v1/partitions/move` moves a partition between shards (`moves`); anything else gets 404 or
//! 405.
//!
//! Connections are served one at a time with short timeouts (a scraper sends one small
//! request); each scrape posts a copy job to every shard's inbox and waits at most
//! `COLLECT_LIMIT` for the copies, so a stuck shard delays a scrape but never hangs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::snapshot::{self, ShardSnapshot, COLLECT_LIMIT};
use crate::shard::{Job, Shared};

/// A request head larger than this is refused.
const REQUEST_BYTES_MAX: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (failing start-up if it cannot) and serves metrics from a new thread.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(listener, shared))?;
    info!(listen = %bound, "metrics at http://{bound}/metrics");
    Ok(bound)
}

fn serve(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(err) = answer(stream, &shared) {
                    debug!("metrics connection: {err}");
                }
            }
            Err(err) => {
                warn!("metrics accept failed: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(head) = read_head(&mut stream)? else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        );
    };
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let with_body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = exposition(shared);
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
                with_body,
            )
        }
        ("POST", "/v1/partitions/move") => {
            let (status, body) = move_partition(shared, target);
            respond(
                &mut stream,
                status,
                "application/json",
                body.as_bytes(),
                true,
            )
        }
        ("GET" | "HEAD", _) => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found: metrics are at /metrics\n",
            with_body,
        ),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            true,
        ),
    }
}

/// The value of `key` in the target's query string (`?a=1&b=2`; `%XX` and `+` decoded).
fn query(target: &str, key: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_error(message: &str) -> String {
    format!(
        "{{\"error\": {}}}\n",
        serde_json::Value::String(message.to_string())
    )
}

/// `POST /v1/partitions/move?topic=T&partition=P&to_shard=N`: runs the move on the controller
/// shard and answers when it finished (200 with the shards, 400 for a bad request, 409 when the
/// move could not be done).
fn move_partition(shared: &Arc<Shared>, target: &str) -> (&'static str, String) {
    let (Some(topic), Some(partition), Some(to)) = (
        query(target, "topic"),
        query(target, "partition").and_then(|p| p.parse::<i32>().ok()),
        query(target, "to_shard").and_then(|s| s.parse::<usize>().ok()),
    ) else {
        return (
            "400 Bad Request",
            json_error("expected ?topic=NAME&partition=N&to_shard=N"),
        );
    };
    let (tx, rx) = mpsc::channel();
    let (name, index) = (topic.clone(), partition);
    let job: Job = Box::new(move |shard| {
        let shard = shard.clone();
        drop(ringtail_engine::io::spawn(async move {
            let _ = tx.send(crate::moves::move_partition(&shard, name, index, to).await);
        }));
    });
    if !matches!(shared.handles[0].try_post(job), Ok(true)) {
        return (
            "503 Service Unavailable",
            json_error("the controller shard is busy or stopped"),
        );
    }
    match rx.recv_timeout(MOVE_LIMIT) {
        Ok(Ok(moved)) => (
            "200 OK",
            format!(
                "{{\"topic\": {}, \"partition\": {partition}, \"from_shard\": {}, \"to_shard\": {}}}\n",
                serde_json::Value::String(topic),
                moved.from.0,
                moved.to.0
            ),
        ),
        Ok(Err(err)) => {
            let status = match err {
                crate::moves::MoveError::UnknownTopic(_)
                | crate::moves::MoveError::UnknownPartition { .. } => "404 Not Found",
                crate::moves::MoveError::NoSuchShard { .. }
                | crate::moves::MoveError::Internal(_) => "400 Bad Request",
                _ => "409 Conflict",
            };
            (status, json_error(&err.to_string()))
        }
        Err(_) => ("504 Gateway Timeout", json_error("the move did not finish in time; it goes on")),
    }
}

/// How long a move request waits for the move.
const MOVE_LIMIT: Duration = Duration::from_secs(120);

/// Reads up to the blank line that ends the request head; None if it is too long or cut.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > REQUEST_BYTES_MAX {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(head).ok())
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

/// Collects every shard's snapshot (those that answer within `COLLECT_LIMIT`) and renders them.
fn exposition(shared: &Arc<Shared>) -> String {
    let snapshots = collect(shared);
    super::render::render(shared.handles.len(), &snapshots, &snapshot::iowq_workers())
}

fn collect(shared: &Arc<Shared>) -> Vec<ShardSnapshot> {
    let (tx, rx) = mpsc::channel::<ShardSnapshot>();
    let mut asked = 0;
    for handle in &shared.handles {
        let tx = tx.clone();
        let job: Job = Box::new(move |shard| {
            let _ = tx.send(snapshot::take(shard));
        });
        // A full inbox or a stopped shard: its figures are missing from this scrape.
        if let Ok(true) = handle.try_post(job) {
            asked += 1;
        }
    }
    drop(tx);
    let deadline = Instant::now() + COLLECT_LIMIT;
    let mut snapshots = Vec::with_capacity(asked);
    while snapshots.len() < asked {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(_) => break,
        }
    }
    snapshots.sort_by_key(|s| s.shard);
    snapshots
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_decoded() {
        let target = "/v1/partitions/move?topic=a%2Eb&partition=3&to_shard=1&x=%zz+y";
        assert_eq!(super::query(target, "topic").as_deref(), Some("a.b"));
        assert_eq!(super::query(target, "partition").as_deref(), Some("3"));
        assert_eq!(super::query(target, "x").as_deref(), Some("%zz y"));
        assert_eq!(super::query(target, "missing"), None);
        assert_eq!(super::query("/metrics", "topic"), None);
    }
}
