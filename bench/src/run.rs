//! The workers: producers (pipelined Produce v7 requests, optionally paced at a fixed rate with
//! latency measured from each request's intended send time) and consumers (Fetch v4 from the
//! earliest offset, counting records from batch headers). One thread per connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::{batches, BatchTemplate};
use crate::client::{ClientError, Connection, Decoder, Encoder, Result, FETCH, PRODUCE};
use crate::stats::Meter;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// When a run stops: after a message count, or at a deadline.
pub struct Limit {
    pub messages: Option<u64>,
    pub deadline: Option<Instant>,
    /// Messages claimed (producers) or seen (consumers) so far, over all workers.
    pub counted: AtomicU64,
    pub stop: AtomicBool,
    /// Paced runs: how late a request went out against its schedule, in microseconds: the
    /// largest lag seen, and the largest over connections of each one's last request.
    pub lag_max_us: AtomicU64,
    pub lag_end_us: AtomicU64,
}

impl Limit {
    pub fn new(messages: Option<u64>, duration: Option<Duration>) -> Arc<Limit> {
        Arc::new(Limit {
            messages,
            deadline: duration.map(|d| Instant::now() + d),
            counted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            lag_max_us: AtomicU64::new(0),
            lag_end_us: AtomicU64::new(0),
        })
    }

    fn timed_out(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Claims up to `want` messages to send; 0 when the run is over.
    fn claim(&self, want: u64) -> u64 {
        if self.timed_out() {
            return 0;
        }
        let Some(total) = self.messages else {
            return want;
        };
        let before = self.counted.fetch_add(want, Ordering::Relaxed);
        total.saturating_sub(before).min(want)
    }
}

pub struct ProduceSettings {
    pub brokers: String,
    pub topic: String,
    pub value_bytes: usize,
    pub batch_records: i32,
    pub acks: i16,
    /// Messages per second for this connection; None: as fast as possible.
    pub rate: Option<f64>,
    pub inflight: usize,
    /// Rewrite the send time in every batch (end-to-end latency needs it).
    pub stamp_every_batch: bool,
}

struct InFlight {
    correlation_id: i32,
    intended_us: u64,
    messages: u64,
    bytes: u64,
    partition: i32,
    /// Sends of this batch so far (1 for the first).
    attempt: u32,
}

/// A batch refused with a retriable error, to be sent again by the sender thread (the only one
/// writing to the connection) once `due_us` has passed.
struct Retry {
    partition: i32,
    messages: u64,
    bytes: u64,
    intended_us: u64,
    attempt: u32,
    due_us: u64,
}

/// Error codes a producer retries: the partition is moving or has no leader right now
/// (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, REQUEST_TIMED_OUT), as Kafka's clients do.
pub fn retriable(code: i16) -> bool {
    matches!(code, 5 | 6 | 7)
}

/// Sends of one batch before its error is reported; with the backoff below, about 25 s.
const ATTEMPTS_MAX: u32 = 50;
/// Wait before the n-th resend: n x 10 ms, at most 1 s.
fn backoff_us(attempt: u32) -> u64 {
    (u64::from(attempt) * 10_000).min(1_000_000)
}

/// The sender's view of one connection's requests.
struct Flow {
    /// Requests sent and not yet answered for good (retried ones stay counted); the response
    /// reader counts them down.
    outstanding: Arc<std::sync::atomic::AtomicUsize>,
    /// Batches the reader found refused with a retriable error.
    retries: std::sync::mpsc::Receiver<Retry>,
}

/// One producer connection, cycling through `partitions`. This thread sends on schedule; a
/// second thread reads the responses as they arrive, so a paced run measures the broker, not
/// the generator's own reading (open loop: latency counts from the intended send time).
pub fn produce(
    settings: &ProduceSettings,
    partitions: &[i32],
    limit: &Limit,
    meter: &mut Meter,
    response_meter: Meter,
) -> Result<()> {
    let mut connection = Connection::connect(&settings.brokers)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<InFlight>(settings.inflight);
    let (retry_tx, retry_rx) = std::sync::mpsc::channel::<Retry>();
    let flow = Flow {
        outstanding: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        retries: retry_rx,
    };
    let reader = if settings.acks != 0 {
        let mut reading = connection.try_clone()?;
        let mut meter = response_meter;
        let outstanding = flow.outstanding.clone();
        Some(std::thread::spawn(move || -> Result<()> {
            let mut response = Vec::new();
            for request in rx {
                let result = complete(&mut reading, request, &mut response, &mut meter, &retry_tx);
                outstanding.fetch_sub(1, Ordering::AcqRel);
                result?;
            }
            Ok(())
        }))
    } else {
        drop(response_meter);
        None
    };
    let sent = send_loop(
        settings,
        partitions,
        limit,
        meter,
        &mut connection,
        &tx,
        &flow,
    );
    drop(tx);
    let received = reader.map_or(Ok(()), |r| r.join().expect("response reader thread"));
    sent.and(received)
}

fn send_loop(
    settings: &ProduceSettings,
    partitions: &[i32],
    limit: &Limit,
    meter: &mut Meter,
    connection: &mut Connection,
    inflight: &std::sync::mpsc::SyncSender<InFlight>,
    flow: &Flow,
) -> Result<()> {
    let mut template = BatchTemplate::new(settings.batch_records, settings.value_bytes);
    let mut short: Option<BatchTemplate> = None;
    let start_us = now_us();
    let interval_us = settings
        .rate
        .map(|rate| f64::from(settings.batch_records) / rate * 1e6);
    let mut sent_batches: u64 = 0;
    let mut next_partition = 0;
    let mut lag_us = 0;
    let mut waiting: Vec<Retry> = Vec::new();
    loop {
        if !resend_due(settings, connection, inflight, flow, &mut waiting, false)? {
            return Ok(()); // the reader stopped on an error; it reports it
        }
        let want = settings.batch_records as u64;
        let claimed = limit.claim(want);
        if claimed == 0 {
            limit.lag_end_us.fetch_max(lag_us, Ordering::Relaxed);
            // Retried batches are part of the run: send them until every one is answered.
            loop {
                if !resend_due(settings, connection, inflight, flow, &mut waiting, true)? {
                    return Ok(());
                }
                if flow.outstanding.load(Ordering::Acquire) == 0 {
                    // The reader queues a retry before it counts the request answered, so
                    // with nothing outstanding every retry is in the queue now.
                    waiting.extend(flow.retries.try_iter());
                    if waiting.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
        let batch = if claimed == want {
            &mut template
        } else {
            short.insert(BatchTemplate::new(claimed as i32, settings.value_bytes))
        };
        let intended_us = match interval_us {
            Some(interval) => {
                let at = start_us + (sent_batches as f64 * interval) as u64;
                let now = now_us();
                if at > now {
                    std::thread::sleep(Duration::from_micros(at - now));
                }
                at
            }
            None => now_us(),
        };
        if settings.stamp_every_batch || sent_batches == 0 || claimed != want {
            batch.stamp(now_us());
        }
        let partition = partitions[next_partition % partitions.len()];
        next_partition += 1;
        let correlation_id = send_batch(settings, connection, partition, &batch.bytes)?;
        if interval_us.is_some() {
            lag_us = now_us().saturating_sub(intended_us);
            limit.lag_max_us.fetch_max(lag_us, Ordering::Relaxed);
        }
        sent_batches += 1;
        let bytes = (claimed as usize * settings.value_bytes) as u64;
        if settings.acks == 0 {
            meter.record(claimed, bytes, None);
            continue;
        }
        let request = InFlight {
            correlation_id,
            intended_us,
            messages: claimed,
            bytes,
            partition,
            attempt: 1,
        };
        flow.outstanding.fetch_add(1, Ordering::AcqRel);
        if inflight.send(request).is_err() {
            // The reader stopped on an error; it reports it.
            return Ok(());
        }
    }
}

/// Sends one Produce v7 request carrying `batch` for `partition`; returns its correlation id.
fn send_batch(
    settings: &ProduceSettings,
    connection: &mut Connection,
    partition: i32,
    batch: &[u8],
) -> Result<i32> {
    let mut prefix = Encoder::default();
    prefix
        .null_string()
        .i16(settings.acks)
        .i32(30_000)
        .i32(1)
        .string(&settings.topic)
        .i32(1)
        .i32(partition)
        .i32(batch.len() as i32);
    connection.send_parts(PRODUCE, 7, &[&prefix.buf, batch])
}

/// Sends the refused batches whose backoff has passed (`block`: waits a little for one when none
/// is due). False when the reader has stopped.
fn resend_due(
    settings: &ProduceSettings,
    connection: &mut Connection,
    inflight: &std::sync::mpsc::SyncSender<InFlight>,
    flow: &Flow,
    waiting: &mut Vec<Retry>,
    block: bool,
) -> Result<bool> {
    if block && waiting.is_empty() {
        if let Ok(retry) = flow.retries.recv_timeout(Duration::from_millis(5)) {
            waiting.push(retry);
        }
    }
    waiting.extend(flow.retries.try_iter());
    let now = now_us();
    let mut index = 0;
    while index < waiting.len() {
        if waiting[index].due_us > now {
            index += 1;
            continue;
        }
        let retry = waiting.swap_remove(index);
        let batch = BatchTemplate::new(retry.messages as i32, settings.value_bytes);
        let correlation_id = send_batch(settings, connection, retry.partition, &batch.bytes)?;
        flow.outstanding.fetch_add(1, Ordering::AcqRel);
        let request = InFlight {
            correlation_id,
            intended_us: retry.intended_us,
            messages: retry.messages,
            bytes: retry.bytes,
            partition: retry.partition,
            attempt: retry.attempt,
        };
        if inflight.send(request).is_err() {
            return Ok(false);
        }
    }
    if block && !waiting.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(true)
}

fn complete(
    connection: &mut Connection,
    request: InFlight,
    response: &mut Vec<u8>,
    meter: &mut Meter,
    retries: &std::sync::mpsc::Sender<Retry>,
) -> Result<()> {
    connection.receive(request.correlation_id, response)?;
    let done_us = now_us();
    let mut d = Decoder::new(response);
    d.array_len()?;
    d.string()?;
    d.array_len()?;
    d.i32()?;
    let code = d.i16()?;
    if retriable(code) && request.attempt < ATTEMPTS_MAX {
        // Sent again by the sender; its latency still counts from the first intended time.
        meter.retry();
        let _ = retries.send(Retry {
            partition: request.partition,
            messages: request.messages,
            bytes: request.bytes,
            intended_us: request.intended_us,
            attempt: request.attempt + 1,
            due_us: now_us() + backoff_us(request.attempt),
        });
        return Ok(());
    }
    if code != 0 {
        meter.error();
        return Err(ClientError::Kafka {
            code,
            what: "produce".into(),
        });
    }
    meter.record(
        request.messages,
        request.bytes,
        Some(done_us.saturating_sub(request.intended_us)),
    );
    Ok(())
}

pub struct ConsumeSettings {
    pub brokers: String,
    pub topic: String,
    pub verify: bool,
    /// Record end-to-end latency from the send time in each batch instead of fetch latency.
    pub end_to_end: bool,
    pub fetch_max_bytes: i32,
}

/// One consumer connection reading `partitions` from their earliest offsets.
pub fn consume(
    settings: &ConsumeSettings,
    partitions: &[i32],
    limit: &Limit,
    meter: &mut Meter,
) -> Result<()> {
    let mut connection = Connection::connect(&settings.brokers)?;
    let mut next: Vec<(i32, i64)> = Vec::with_capacity(partitions.len());
    for &partition in partitions {
        next.push((
            partition,
            connection.list_offset(&settings.topic, partition, -2)?,
        ));
    }
    let mut response = Vec::new();
    let per_partition = (settings.fetch_max_bytes / partitions.len().max(1) as i32).max(1 << 20);
    loop {
        if limit.timed_out()
            || limit
                .messages
                .is_some_and(|m| limit.counted.load(Ordering::Relaxed) >= m)
        {
            return Ok(());
        }
        let mut body = Encoder::default();
        body.i32(-1)
            .i32(100)
            .i32(1)
            .i32(settings.fetch_max_bytes)
            .i8(0);
        body.i32(1).string(&settings.topic).i32(next.len() as i32);
        for &(partition, offset) in &next {
            body.i32(partition).i64(offset).i32(per_partition);
        }
        let sent = Instant::now();
        let correlation_id = connection.send(FETCH, 4, &body.buf)?;
        connection.receive(correlation_id, &mut response)?;
        let fetch_us = sent.elapsed().as_micros() as u64;
        let arrived_us = now_us();
        let mut d = Decoder::new(&response);
        d.i32()?; // throttle
        let mut got_messages = 0u64;
        let mut got_bytes = 0u64;
        for _ in 0..d.array_len()? {
            d.string()?;
            for _ in 0..d.array_len()? {
                let partition = d.i32()?;
                let code = d.i16()?;
                d.i64()?; // high watermark
                d.i64()?; // last stable offset
                let aborted = d.i32()?;
                for _ in 0..aborted.max(0) {
                    d.i64()?;
                    d.i64()?;
                }
                let records = d.bytes()?.unwrap_or(&[]);
                if retriable(code) {
                    // Moving or leaderless for now: asked again in the next fetch.
                    meter.retry();
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                if code != 0 {
                    meter.error();
                    return Err(ClientError::Kafka {
                        code,
                        what: format!("fetch of partition {partition}"),
                    });
                }
                let Some(slot) = next.iter_mut().find(|(p, _)| *p == partition) else {
                    continue;
                };
                for batch in batches(records) {
                    if batch.last_offset < slot.1 {
                        continue;
                    }
                    if settings.verify && !batch.crc_ok() {
                        meter.error();
                        return Err(ClientError::Malformed(
                            "a fetched batch failed its CRC-32C check",
                        ));
                    }
                    let skipped = (slot.1 - batch.base_offset).max(0);
                    let count = (i64::from(batch.records) - skipped).max(0) as u64;
                    got_messages += count;
                    got_bytes += batch.bytes.len() as u64;
                    if settings.end_to_end {
                        if let Some(sent_us) = batch.send_time_us() {
                            meter.record_latency_n(arrived_us.saturating_sub(sent_us), count);
                        }
                    }
                    slot.1 = batch.last_offset + 1;
                }
            }
        }
        limit.counted.fetch_add(got_messages, Ordering::Relaxed);
        let latency = if settings.end_to_end || got_messages == 0 {
            None
        } else {
            Some(fetch_us)
        };
        meter.record(got_messages, got_bytes, latency);
    }
}
