//! Fetch (v4-16), framed by hand so that record bytes are spliced from the segment files to the
//! socket and never copied into user space.
//!
//! The owner shard of each partition answers with file ranges on batch boundaries; this shard
//! writes the response around them. If fewer than `min_bytes` are available, the request waits
//! (long poll) until any requested partition gets new data or `max_wait_ms` passes, then reads
//! once more. Fetch sessions are not kept: the response's session id is 0, which tells clients
//! to send full fetch requests, as Kafka allows.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use ringtail_engine::{FileRange, Offset, ReadResult};

use super::errors::read_error_code;
use super::{Part, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, put_response_header, RequestHeader};
use crate::shard::{LocalFuture, Shard, ShardId};
use crate::sync::{any, timeout};
use crate::topics::TopicId;

pub(super) struct PartitionRequest {
    index: i32,
    fetch_offset: i64,
    max_bytes: i32,
}

pub(super) struct TopicRequest {
    name: Option<String>,
    id: TopicId,
    partitions: Vec<PartitionRequest>,
}

pub(super) struct Request {
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    topics: Vec<TopicRequest>,
}

pub(super) fn decode(version: i16, body: &mut Reader) -> Result<Request, DecodeError> {
    if version < 15 {
        let _replica_id = body.i32()?;
    }
    let max_wait_ms = body.i32()?;
    let min_bytes = body.i32()?;
    let max_bytes = body.i32()?;
    let _isolation_level = body.i8()?;
    if version >= 7 {
        let _session_id = body.i32()?;
        let _session_epoch = body.i32()?;
    }
    let topics = body.structs(5, |body| {
        let (name, id) = if version >= 13 {
            (None, body.uuid()?)
        } else {
            (Some(body.string()?), [0; 16])
        };
        let partitions = body.structs(16, |body| {
            let index = body.i32()?;
            if version >= 9 {
                let _current_leader_epoch = body.i32()?;
            }
            let fetch_offset = body.i64()?;
            if version >= 12 {
                let _last_fetched_epoch = body.i32()?;
            }
            if version >= 5 {
                let _log_start_offset = body.i64()?;
            }
            Ok(PartitionRequest {
                index,
                fetch_offset,
                max_bytes: body.i32()?,
            })
        })?;
        Ok(TopicRequest {
            name,
            id,
            partitions,
        })
    })?;
    // Forgotten topics (v7+), rack id (v11+) and tagged fields need no answer.
    Ok(Request {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics,
    })
}

/// What one partition contributes to the response.
enum Answer {
    Data(ReadResult),
    Error {
        code: i16,
        high_watermark: i64,
        log_start_offset: i64,
    },
}

impl Answer {
    fn error(code: i16) -> Answer {
        Answer::Error {
            code,
            high_watermark: -1,
            log_start_offset: -1,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Answer::Data(result) => result.bytes(),
            Answer::Error { .. } => 0,
        }
    }
}

/// A requested partition resolved to its topic and owner.
struct Target {
    topic: Option<String>,
    index: i32,
    /// None: no such topic or partition.
    owner: Option<ShardId>,
    /// In a cluster, why this broker does not serve it (it does not lead it).
    refused: Option<i16>,
    fetch_offset: i64,
    max_bytes: i32,
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let version = header.api_version;
    let request = decode(version, &mut body)?;
    let registry = shard.registry();
    let targets: Vec<Vec<Target>> = request
        .topics
        .iter()
        .map(|topic| {
            let found = match &topic.name {
                Some(name) => registry.get(name),
                None => registry.by_id(&topic.id),
            };
            topic
                .partitions
                .iter()
                .map(|p| Target {
                    topic: found.map(|t| t.name.clone()),
                    index: p.index,
                    owner: found
                        .and_then(|t| usize::try_from(p.index).ok().and_then(|i| t.shards.get(i)))
                        .copied(),
                    refused: found.and_then(|t| {
                        usize::try_from(p.index)
                            .ok()
                            .and_then(|i| t.serves(i).err())
                    }),
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.max_bytes,
                })
                .collect()
        })
        .collect();
    let unknown = if version >= 13 {
        error_code::UNKNOWN_TOPIC_ID
    } else {
        error_code::UNKNOWN_TOPIC_OR_PARTITION
    };

    let mut answers = read_all(shard, &targets, request.max_bytes, unknown).await;
    let available: u64 = answers.iter().flatten().map(Answer::bytes).sum();
    if available < request.min_bytes.max(1) as u64 && request.max_wait_ms > 0 {
        let wait = Duration::from_millis(request.max_wait_ms as u64);
        let waits: Vec<_> = targets
            .iter()
            .flatten()
            .filter(|t| t.refused.is_none())
            .filter_map(|t| Some(wait_for_data(shard, t, t.owner?, wait)))
            .collect();
        let _ = timeout(wait, any(waits)).await;
        answers = read_all(shard, &targets, request.max_bytes, unknown).await;
    }
    Ok(Response::Parts(encode(header, &request, answers)))
}

/// Reads every requested partition in order, within the response's byte budget.
async fn read_all(
    shard: &Rc<Shard>,
    targets: &[Vec<Target>],
    max_bytes: i32,
    unknown: i16,
) -> Vec<Vec<Answer>> {
    let mut budget = max_bytes.max(0) as u64;
    let mut answers = Vec::with_capacity(targets.len());
    for topic in targets {
        let mut topic_answers = Vec::with_capacity(topic.len());
        for target in topic {
            let answer = match (&target.topic, target.owner, target.refused) {
                (None, _, _) | (_, None, _) => Answer::error(unknown),
                (_, _, Some(code)) => Answer::error(code),
                (Some(name), Some(owner), None) => {
                    // Past the response's budget, partitions are still reported, without data.
                    let limit = (target.max_bytes.max(0) as u64).min(budget);
                    let answer = read_one(
                        shard,
                        owner,
                        name.clone(),
                        target.index,
                        target.fetch_offset,
                        limit,
                    )
                    .await;
                    budget = budget.saturating_sub(answer.bytes());
                    answer
                }
            };
            topic_answers.push(answer);
        }
        answers.push(topic_answers);
    }
    answers
}

async fn read_one(
    shard: &Rc<Shard>,
    owner: ShardId,
    topic: String,
    index: i32,
    offset: i64,
    limit: u64,
) -> Answer {
    let job = move |owner_shard: Rc<Shard>| -> LocalFuture<Answer> {
        Box::pin(async move {
            let Some(partition) = owner_shard.partition(&topic, index) else {
                return Answer::error(owner_shard.missing_partition_code(&topic, index));
            };
            if limit == 0 {
                // No budget left: offsets only.
                return Answer::Data(ReadResult {
                    ranges: Vec::new(),
                    high_watermark: partition.high_watermark(),
                    log_start_offset: partition.log_start_offset(),
                });
            }
            match partition.read(Offset(offset), limit as usize).await {
                Ok(result) => Answer::Data(result),
                Err(err) => Answer::Error {
                    code: read_error_code(&err),
                    high_watermark: partition.high_watermark().get(),
                    log_start_offset: partition.log_start_offset().get(),
                },
            }
        })
    };
    shard
        .on_shard(owner, job)
        .await
        .unwrap_or_else(|| Answer::error(error_code::KAFKA_STORAGE_ERROR))
}

/// Completes when the partition has data at or past the fetch offset, or after `wait`.
async fn wait_for_data(shard: &Rc<Shard>, target: &Target, owner: ShardId, wait: Duration) {
    let Some(topic) = target.topic.clone() else {
        return;
    };
    let (index, offset) = (target.index, target.fetch_offset);
    let job = move |owner_shard: Rc<Shard>| -> LocalFuture<()> {
        Box::pin(async move {
            if let Some(partition) = owner_shard.partition(&topic, index) {
                let _ = timeout(wait, partition.wait_high_watermark_above(Offset(offset))).await;
            }
        })
    };
    shard.on_shard(owner, job).await;
}

/// Builds the response: byte parts around spliced file ranges, with the size prefix covering
/// both.
fn encode(header: &RequestHeader, request: &Request, answers: Vec<Vec<Answer>>) -> Vec<Part> {
    let version = header.api_version;
    let flexible = version >= 12;
    let mut frames = Frames::new();
    frames.current.put_i32(0); // size, patched at the end
    put_response_header(&mut frames.current, header);
    frames.current.put_i32(0); // throttle_time_ms
    if version >= 7 {
        frames.current.put_i16(error_code::NONE);
        frames.current.put_i32(0); // session_id: no session
    }
    put_len(&mut frames.current, flexible, request.topics.len());
    for (topic, topic_answers) in request.topics.iter().zip(answers) {
        if version >= 13 {
            frames.current.put_slice(&topic.id);
        } else {
            put_string(
                &mut frames.current,
                flexible,
                topic.name.as_deref().unwrap_or(""),
            );
        }
        put_len(&mut frames.current, flexible, topic.partitions.len());
        for (partition, answer) in topic.partitions.iter().zip(topic_answers) {
            let (code, high_watermark, log_start_offset, ranges) = match answer {
                Answer::Data(result) => (
                    error_code::NONE,
                    result.high_watermark.get(),
                    result.log_start_offset.get(),
                    result.ranges,
                ),
                Answer::Error {
                    code,
                    high_watermark,
                    log_start_offset,
                } => (code, high_watermark, log_start_offset, Vec::new()),
            };
            crate::metrics::api_error(header.api_key, code);
            let buf = &mut frames.current;
            buf.put_i32(partition.index);
            buf.put_i16(code);
            buf.put_i64(high_watermark);
            buf.put_i64(high_watermark); // last_stable_offset: no transactions
            if version >= 5 {
                buf.put_i64(log_start_offset);
            }
            put_null_array(buf, flexible); // aborted_transactions
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let records_len: u64 = ranges.iter().map(|r| r.len).sum();
            put_len(buf, flexible, records_len as usize);
            for range in ranges {
                frames.file(range);
            }
            if flexible {
                frames.current.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            frames.current.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        frames.current.put_u8(0); // response tagged fields
    }
    frames.finish()
}

/// Accumulates response bytes, cutting them where a file range is spliced in.
struct Frames {
    done: Vec<FramePart>,
    current: BytesMut,
}

enum FramePart {
    Bytes(BytesMut),
    File(FileRange),
}

impl Frames {
    fn new() -> Frames {
        Frames {
            done: Vec::new(),
            current: BytesMut::with_capacity(256),
        }
    }

    fn file(&mut self, range: FileRange) {
        let bytes = std::mem::replace(&mut self.current, BytesMut::with_capacity(64));
        self.done.push(FramePart::Bytes(bytes));
        self.done.push(FramePart::File(range));
    }

    fn finish(mut self) -> Vec<Part> {
        let last = std::mem::take(&mut self.current);
        self.done.push(FramePart::Bytes(last));
        let total: u64 = self
            .done
            .iter()
            .map(|p| match p {
                FramePart::Bytes(b) => b.len() as u64,
                FramePart::File(r) => r.len,
            })
            .sum();
        if let Some(FramePart::Bytes(first)) = self.done.first_mut() {
            first[0..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
        }
        self.done
            .into_iter()
            .filter(|p| !matches!(p, FramePart::Bytes(b) if b.is_empty()))
            .map(|p| match p {
                FramePart::Bytes(b) => Part::Bytes(b.freeze()),
                FramePart::File(r) => Part::File(r),
            })
            .collect()
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// An array or bytes length: INT32 (classic) or UNSIGNED_VARINT of length + 1 (compact).
fn put_len(buf: &mut BytesMut, flexible: bool, len: usize) {
    if flexible {
        put_unsigned_varint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_null_array(buf: &mut BytesMut, flexible: bool) {
    if flexible {
        buf.put_u8(0);
    } else {
        buf.put_i32(-1);
    }
}

fn put_string(buf: &mut BytesMut, flexible: bool, text: &str) {
    if flexible {
        put_unsigned_varint(buf, text.len() as u64 + 1);
    } else {
        buf.put_i16(text.len() as i16);
    }
    buf.put_slice(text.as_bytes());
}
