//! Connections: one task per connection (started by the accept loop in `broker`) that reads
//! frames, answers them in order and writes the responses (splicing record bytes for fetches).
//!
//! Runs on the shard that accepted the connection: a reader task takes requests in, in order,
//! and a writer task sends the answers in the same order. Produce requests are pipelined (up to
//! [`PIPELINED_MAX`] dispatched and waiting for their acknowledgements; their batches are appended
//! in arrival order before the next request is read); every other request is answered before the
//! next one is read, as Kafka does. Frame sizes are checked before anything is allocated for
//! the body, and the input buffer grows only as bytes arrive, so an idle or half-sent connection
//! pins at most what it actually sent.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ringtail_engine::io::{self as rio, recv, send_all, splice_to_socket, Notify};
use ringtail_engine::timing::{self, Stage};
use tracing::{debug, warn};

use crate::api::{self, Handled, Part, Response};
use crate::conn_limits::{reserve, Permit, Reservation};
use crate::protocol::parse_header;
use crate::shard::{Shard, Shared};
use crate::sync::{self, select, Either};

/// Read granularity: what one recv may add to the input buffer at most.
const RECV_CHUNK_BYTES: usize = 256 * 1024;
/// An idle connection keeps at most this much buffer capacity.
const IDLE_BUFFER_BYTES: usize = 64 * 1024;

struct ConnectionCount(Rc<Shard>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Answers one connection may owe at once (requests taken in and not yet answered). Idempotent
/// producers keep at most 5 requests in flight, others (librdkafka) many more; with acks=all a
/// request waits an fdatasync, so at a high request rate several must be in flight to keep up.
/// Past this, the connection is not read until an answer is sent (backpressure in the socket).
const PIPELINED_MAX: usize = 64;
/// Request bytes one connection may hold in answers it owes; a request is always taken in when
/// nothing is owed, whatever its size (up to `socket.request.max.bytes`).
const PIPELINED_BYTES_MAX: usize = 64 << 20;

/// The answers a connection owes, in request order; its writer task sends them.
struct Outbox {
    queue: RefCell<VecDeque<Owed>>,
    /// Frame bytes of the requests taken in and not yet answered.
    owed_bytes: Cell<usize>,
    /// The reader takes no more requests: the writer stops once the queue is empty.
    closed: Cell<bool>,
    /// The writer stopped on an error: the connection is closing.
    failed: Cell<bool>,
    /// Wakes the writer (an answer queued, or closed) and the reader (room, or failed).
    changed: Notify,
}

struct Owed {
    handled: Handled,
    /// The frame's place in `queued.max.request.bytes` (its size, also counted in the
    /// connection's `owed_bytes`), given back when the answer was sent.
    reservation: Reservation,
    /// When the request's frame was parsed, for stage timing.
    parsed: Option<Instant>,
    /// The request's API key, and when its frame was read (the metrics' request latency).
    api_key: i16,
    received: Instant,
}

impl Outbox {
    async fn wait_for_room(&self) {
        loop {
            let changed = self.changed.notified();
            let room = self.queue.borrow().len() < PIPELINED_MAX
                && self.owed_bytes.get() < PIPELINED_BYTES_MAX;
            if room || self.failed.get() {
                return;
            }
            changed.await;
        }
    }

    async fn wait_failed(&self) {
        loop {
            let changed = self.changed.notified();
            if self.failed.get() {
                return;
            }
            changed.await;
        }
    }
}

pub(crate) async fn serve(shard: Rc<Shard>, stream: Rc<TcpStream>, _permit: Permit) {
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
    let outbox = Rc::new(Outbox {
        queue: RefCell::new(VecDeque::new()),
        owed_bytes: Cell::new(0),
        closed: Cell::new(false),
        failed: Cell::new(false),
        changed: Notify::new(),
    });
    let writer = rio::spawn(write_responses(
        shard.clone(),
        stream.clone(),
        outbox.clone(),
        peer.clone(),
    ));
    read_requests(&shard, &stream, &outbox, &peer, &client_host).await;
    // Answers already owed are still sent (a request in progress finishes).
    outbox.closed.set(true);
    outbox.changed.notify_all();
    writer.await;
}

/// Reads frames and takes each request in, in order, queueing its answer for the writer.
async fn read_requests(
    shard: &Rc<Shard>,
    stream: &Rc<TcpStream>,
    outbox: &Outbox,
    peer: &str,
    client_host: &str,
) {
    let max_frame = shard.shared.config.socket_request_max_bytes;
    let mut input = BytesMut::new();
    loop {
        outbox.wait_for_room().await;
        // Between requests a stop closes the connection; a request in progress finishes.
        let stop = shard.stop.notified();
        if shard.stopped.get() || outbox.failed.get() {
            return;
        }
        let interrupted = select(stop, outbox.wait_failed());
        // `connections.max.idle.ms`: the next request must arrive (whole) within it, so idle
        // and stalled half-sent connections do not keep their resources.
        let idle = Duration::from_millis(shard.shared.config.connections_max_idle_ms);
        let reading = select(
            read_frame(&shard.shared, stream, input, max_frame),
            interrupted,
        );
        let (frame, reservation) = match sync::timeout(idle, reading).await {
            Some(Either::Left(Ok((frame, rest, reservation)))) => {
                input = rest;
                (frame, reservation)
            }
            Some(Either::Left(Err(reason))) => {
                debug!(%peer, "closing connection: {reason}");
                return;
            }
            Some(Either::Right(_)) => return,
            None => {
                debug!(%peer, "closing connection: idle past connections.max.idle.ms");
                return;
            }
        };
        let received = Instant::now();
        let parsed = timing::enabled().then_some(received);
        let (header, body) = match parse_header(frame) {
            Ok(parsed) => parsed,
            Err(e) => {
                warn!(%peer, "closing connection: bad request header: {e}");
                return;
            }
        };
        let api_key = header.api_key;
        let handled = api::take(shard, header, body, client_host).await;
        if matches!(handled, Handled::Pending(_)) {
            timing::record_since(Stage::Dispatch, parsed);
        }
        // A refused request closes the connection once the answers before it are sent: no
        // request after it is taken in (it would be executed and never answered).
        let refused = matches!(handled, Handled::Done(Response::Close(_)));
        outbox
            .owed_bytes
            .set(outbox.owed_bytes.get() + reservation.bytes());
        outbox.queue.borrow_mut().push_back(Owed {
            handled,
            parsed,
            reservation,
            api_key,
            received,
        });
        outbox.changed.notify_all();
        if refused {
            return;
        }
        if input.is_empty() && input.capacity() > IDLE_BUFFER_BYTES {
            input = BytesMut::new();
        }
    }
}

/// How long a send may still take once the broker is stopping.
const STOP_SEND_GRACE: Duration = Duration::from_secs(1);

/// Resolves STOP_SEND_GRACE after the shard was told to stop.
async fn after_stop(shard: &Shard) {
    loop {
        let stop = shard.stop.notified();
        if shard.stopped.get() {
            break;
        }
        stop.await;
    }
    rio::sleep(STOP_SEND_GRACE).await;
}

/// Sends the connection's answers in request order, waiting for each pending one in turn.
async fn write_responses(
    shard: Rc<Shard>,
    stream: Rc<TcpStream>,
    outbox: Rc<Outbox>,
    peer: String,
) {
    loop {
        let changed = outbox.changed.notified();
        let next = outbox.queue.borrow_mut().pop_front();
        let Some(owed) = next else {
            if outbox.closed.get() {
                return;
            }
            changed.await;
            continue;
        };
        let (response, pipelined) = match owed.handled {
            Handled::Done(response) => (response, false),
            Handled::Pending(task) => {
                let (response, ready) = task.await;
                timing::record_since(Stage::ResponseOrder, ready);
                (response, true)
            }
        };
        let sending = timing::start();
        // A peer that stopped reading must not hold up a stop: once stopping, a send gets
        // STOP_SEND_GRACE to finish, then the connection is closed.
        let sent = match select(respond(&shard, &stream, response), after_stop(&shard)).await {
            Either::Left(sent) => sent,
            Either::Right(()) => Err(Closed::StoppingUnread),
        };
        outbox
            .owed_bytes
            .set(outbox.owed_bytes.get() - owed.reservation.bytes());
        if let Err(reason) = &sent {
            debug!(%peer, "closing connection: {reason}");
            outbox.failed.set(true);
        }
        outbox.changed.notify_all();
        if sent.is_err() {
            return;
        }
        crate::metrics::request_done(owed.api_key, owed.received.elapsed());
        if pipelined {
            timing::record_since(Stage::ResponseSend, sending);
            timing::record_since(Stage::Total, owed.parsed);
        }
    }
}

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("peer closed")]
    PeerClosed,
    #[error("frame size {size} outside 0..={max} (socket.request.max.bytes)")]
    FrameSize { size: i32, max: usize },
    #[error("{op} failed: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    /// The request cannot be answered (see `Response::Close`).
    #[error("{0}")]
    Refused(String),
    #[error("stopping, and the peer is not reading")]
    StoppingUnread,
}

/// Reads one frame. Returns its body (after the size prefix), the bytes received after it, and
/// the frame's place in `queued.max.request.bytes` (taken before its body is received).
async fn read_frame(
    shared: &Arc<Shared>,
    stream: &Rc<TcpStream>,
    mut input: BytesMut,
    max_frame: usize,
) -> Result<(BytesMut, BytesMut, Reservation), Closed> {
    input = fill(stream, input, 4).await?;
    let size = i32::from_be_bytes(input[0..4].try_into().expect("4 bytes"));
    if size < 0 || size as usize > max_frame {
        return Err(Closed::FrameSize {
            size,
            max: max_frame,
        });
    }
    let reservation = reserve(&shared.limits, size as usize).await;
    input = fill(stream, input, 4 + size as usize).await?;
    let mut frame = input.split_to(4 + size as usize);
    frame.advance(4);
    Ok((frame, input, reservation))
}

/// Receives until `input` holds at least `want` bytes, growing the buffer only by what is due.
async fn fill(
    stream: &Rc<TcpStream>,
    mut input: BytesMut,
    want: usize,
) -> Result<BytesMut, Closed> {
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
            Ok(0) => return Err(Closed::PeerClosed),
            Ok(_) => {}
            Err(source) => return Err(Closed::Io { op: "recv", source }),
        }
    }
    Ok(input)
}

async fn respond(
    shard: &Rc<Shard>,
    stream: &Rc<TcpStream>,
    response: Response,
) -> Result<(), Closed> {
    let io = |op| move |source| Closed::Io { op, source };
    match response {
        Response::None => Ok(()),
        Response::Frame(bytes) => send_all(stream.clone(), bytes).await.0.map_err(io("send")),
        Response::Close(reason) => Err(Closed::Refused(reason)),
        Response::Parts(parts) => {
            for part in parts {
                match part {
                    Part::Bytes(bytes) => {
                        send_all(stream.clone(), bytes)
                            .await
                            .0
                            .map_err(io("send"))?;
                    }
                    Part::File(range) => {
                        let pipe = shard.take_pipe().map_err(io("pipe"))?;
                        let file = Rc::new(range.file.clone());
                        splice_to_socket(
                            pipe.clone(),
                            file,
                            range.position.get(),
                            range.len,
                            stream.clone(),
                        )
                        .await
                        .map_err(io("splice"))?;
                        shard.return_pipe(pipe);
                    }
                }
            }
            Ok(())
        }
    }
}
