//! Connections: the accept loop and one task per connection that reads frames, answers them in
//! order and writes the responses (splicing record bytes for fetches).
//!
//! Runs on the shard that accepted the connection. Requests of one connection are answered one
//! at a time, in order, as Kafka does. Frame sizes are checked before anything is allocated for
//! the body, and the input buffer grows only as bytes arrive, so an idle or half-sent connection
//! pins at most what it actually sent.

use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ringtail_engine::io::{self as rio, accept, recv, send_all, splice_to_socket};
use tracing::{debug, warn};

use crate::api::{self, Part, Response};
use crate::protocol::parse_header;
use crate::shard::sync::{select, Either};
use crate::shard::Shard;

/// Read granularity: what one recv may add to the input buffer at most.
const RECV_CHUNK_BYTES: usize = 256 * 1024;
/// An idle connection keeps at most this much buffer capacity.
const IDLE_BUFFER_BYTES: usize = 64 * 1024;

pub async fn accept_loop(shard: Rc<Shard>, listener: Rc<TcpListener>) {
    loop {
        let stop = shard.stop.notified();
        if shard.stopped.get() {
            return;
        }
        match select(accept(listener.clone()), stop).await {
            Either::Left(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                drop(rio::spawn(serve(shard.clone(), Rc::new(stream))));
            }
            Either::Left(Err(e)) => {
                warn!("accept failed: {e}");
                // Out of descriptors or memory: back off rather than spin.
                rio::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(()) => return,
        }
    }
}

struct ConnectionCount(Rc<Shard>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

async fn serve(shard: Rc<Shard>, stream: Rc<TcpStream>) {
    shard.connections.set(shard.connections.get() + 1);
    let _count = ConnectionCount(shard.clone());
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Kafka reports a member's host as "/<ip>".
    let client_host = stream
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default();
    let max_frame = shard.shared.config.socket_request_max_bytes;
    let mut input = BytesMut::new();
    loop {
        // Between requests a stop closes the connection; a request in progress finishes.
        let stop = shard.stop.notified();
        if shard.stopped.get() {
            return;
        }
        let frame = match select(read_frame(&stream, input, max_frame), stop).await {
            Either::Left(Ok((frame, rest))) => {
                input = rest;
                frame
            }
            Either::Left(Err(reason)) => {
                debug!(%peer, "closing connection: {reason}");
                return;
            }
            Either::Right(()) => return,
        };
        let (header, body) = match parse_header(frame) {
            Ok(parsed) => parsed,
            Err(e) => {
                warn!(%peer, "closing connection: bad request header: {e}");
                return;
            }
        };
        let response = api::handle(&shard, header, body, &client_host).await;
        if let Err(reason) = respond(&shard, &stream, response).await {
            debug!(%peer, "closing connection: {reason}");
            return;
        }
        if input.is_empty() && input.capacity() > IDLE_BUFFER_BYTES {
            input = BytesMut::new();
        }
    }
}

/// Reads one frame. Returns its body (after the size prefix) and the bytes received after it.
async fn read_frame(
    stream: &Rc<TcpStream>,
    mut input: BytesMut,
    max_frame: usize,
) -> Result<(BytesMut, BytesMut), String> {
    input = fill(stream, input, 4).await?;
    let size = i32::from_be_bytes(input[0..4].try_into().expect("4 bytes"));
    if size < 0 || size as usize > max_frame {
        return Err(format!(
            "frame size {size} outside 0..={max_frame} (socket.request.max.bytes)"
        ));
    }
    input = fill(stream, input, 4 + size as usize).await?;
    let mut frame = input.split_to(4 + size as usize);
    frame.advance(4);
    Ok((frame, input))
}

/// Receives until `input` holds at least `want` bytes, growing the buffer only by what is due.
async fn fill(
    stream: &Rc<TcpStream>,
    mut input: BytesMut,
    want: usize,
) -> Result<BytesMut, String> {
    while input.len() < want {
        let missing = want - input.len();
        let chunk = missing.clamp(4096, RECV_CHUNK_BYTES);
        if input.capacity() - input.len() < chunk.min(missing) {
            input.reserve(chunk);
        }
        let spare = input.capacity() - input.len();
        let (result, _, back) = recv(stream.clone(), input, spare.min(RECV_CHUNK_BYTES)).await;
        input = back;
        match result {
            Ok(0) => return Err("peer closed".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("recv failed: {e}")),
        }
    }
    Ok(input)
}

async fn respond(
    shard: &Rc<Shard>,
    stream: &Rc<TcpStream>,
    response: Response,
) -> Result<(), String> {
    match response {
        Response::None => Ok(()),
        Response::Frame(bytes) => send_all(stream.clone(), bytes)
            .await
            .0
            .map_err(|e| format!("send failed: {e}")),
        Response::Close(reason) => Err(reason),
        Response::Parts(parts) => {
            for part in parts {
                match part {
                    Part::Bytes(bytes) => {
                        send_all(stream.clone(), bytes)
                            .await
                            .0
                            .map_err(|e| format!("send failed: {e}"))?;
                    }
                    Part::File(range) => {
                        let pipe = shard.take_pipe().map_err(|e| format!("pipe: {e}"))?;
                        let file = Rc::new(range.file.clone());
                        splice_to_socket(
                            pipe.clone(),
                            file,
                            range.position,
                            range.len,
                            stream.clone(),
                        )
                        .await
                        .map_err(|e| format!("splice failed: {e}"))?;
                        shard.return_pipe(pipe);
                    }
                }
            }
            Ok(())
        }
    }
}
