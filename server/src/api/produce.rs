//! Produce (v3-10): record batches go from the request buffer to the partition's log without
//! re-encoding. Each partition's batches travel (as owned slices of the request buffer) to the
//! shard that owns it, which validates, appends and waits for what the acks setting and the
//! fsync policy require. acks=0 is answered with nothing at all, as Kafka does.

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::TopicName;
use ringtail_engine::format::batch;
use ringtail_engine::Offset;

use super::errors::append_error_code;
use super::metadata::find_or_create;
use super::{str_bytes, Response};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::{LocalFuture, Shard, ShardId};
use crate::sync::{join_all, Receiver};
use ringtail_engine::timing::{self, Stage};
use std::time::Instant;

pub(super) struct PartitionData {
    index: i32,
    records: Option<BytesMut>,
}

pub(super) struct TopicData {
    name: String,
    partitions: Vec<PartitionData>,
}

/// What one partition answers.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    error_code: i16,
    base_offset: i64,
    log_start_offset: i64,
}

impl Outcome {
    fn error(code: i16) -> Outcome {
        Outcome {
            error_code: code,
            base_offset: -1,
            log_start_offset: -1,
        }
    }
}

/// One partition's batches, sent to its owner.
struct Work {
    slot: (usize, usize),
    topic: String,
    index: i32,
    batches: Vec<BytesMut>,
}

/// A Produce request, as far as it is read.
pub(super) struct Request {
    pub acks: i16,
    pub topics: Vec<TopicData>,
}

pub(super) fn decode(body: &mut Reader) -> Result<Request, DecodeError> {
    let _transactional_id = body.nullable_string()?;
    let acks = body.i16()?;
    let _timeout_ms = body.i32()?;
    let topics = body.structs(3, |body| {
        let name = body.string()?;
        let partitions = body.structs(5, |body| {
            Ok(PartitionData {
                index: body.i32()?,
                records: body.nullable_bytes()?,
            })
        })?;
        Ok(TopicData { name, partitions })
    })?;
    body.tagged_fields()?;
    Ok(Request { acks, topics })
}

/// Splits a partition's records into whole batches (slices of the request buffer). Size limits
/// are the owner's to check (`max.message.bytes` may be a topic override).
fn split_batches(mut records: BytesMut) -> Result<Vec<BytesMut>, i16> {
    let mut batches = Vec::new();
    while !records.is_empty() {
        let size = batch::batch_size(&records).map_err(|_| error_code::CORRUPT_MESSAGE)?;
        if size > records.len() {
            return Err(error_code::CORRUPT_MESSAGE);
        }
        batches.push(records.split_to(size));
    }
    if batches.is_empty() {
        return Err(error_code::CORRUPT_MESSAGE);
    }
    Ok(batches)
}

/// Decodes a produce request and hands every partition's batches to its owner, which appends
/// them before this returns (for a remote owner: the job is in its inbox, and inbox jobs start in
/// order). The returned future waits for the acknowledgements and builds the response, so a
/// connection may read and dispatch its next produce request meanwhile: the appends of
/// successive requests keep the order they arrived in, and responses leave in that order too.
pub async fn dispatch(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<LocalFuture<Response>, DecodeError> {
    let version = header.api_version;
    let Request { acks, topics } = decode(&mut body)?;
    let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(topics.len());
    let mut work_by_owner: Vec<Vec<Work>> = (0..shard.shared.config.shards)
        .map(|_| Vec::new())
        .collect();
    let auto_create = shard.shared.config.topics.auto_create_topics_enable;
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let indexes: Vec<Vec<i32>> = topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.index).collect())
        .collect();
    for (t, topic_data) in topics.into_iter().enumerate() {
        let mut topic_outcomes =
            vec![Outcome::error(error_code::NONE); topic_data.partitions.len()];
        let topic = if matches!(acks, -1..=1) {
            find_or_create(shard, &topic_data.name, auto_create)
                .await
                // Kafka: "Cannot append to internal topic" (only its coordinators write there).
                .and_then(|t| match t.is_internal() {
                    true => Err(error_code::INVALID_TOPIC_EXCEPTION),
                    false => Ok(t),
                })
        } else {
            Err(error_code::INVALID_REQUIRED_ACKS)
        };
        for (p, partition) in topic_data.partitions.into_iter().enumerate() {
            let topic = match &topic {
                Ok(topic) => topic,
                Err(code) => {
                    topic_outcomes[p] = Outcome::error(*code);
                    continue;
                }
            };
            let Some(&owner) = usize::try_from(partition.index)
                .ok()
                .and_then(|i| topic.shards.get(i))
            else {
                topic_outcomes[p] = Outcome::error(error_code::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            };
            if let Err(code) = topic.serves(partition.index as usize) {
                topic_outcomes[p] = Outcome::error(code);
                continue;
            }
            let batches = partition
                .records
                .ok_or(error_code::CORRUPT_MESSAGE)
                .and_then(split_batches);
            match batches {
                Ok(batches) => work_by_owner[owner.0].push(Work {
                    slot: (t, p),
                    topic: topic.name.clone(),
                    index: partition.index,
                    batches,
                }),
                Err(code) => topic_outcomes[p] = Outcome::error(code),
            }
        }
        outcomes.push(topic_outcomes);
    }

    let mut replies: Vec<(Vec<(usize, usize)>, Reply)> = Vec::new();
    for (owner, work) in work_by_owner.into_iter().enumerate() {
        if work.is_empty() {
            continue;
        }
        let owner = ShardId(owner);
        let slots: Vec<(usize, usize)> = work.iter().map(|w| w.slot).collect();
        let reply = if owner == shard.id {
            Reply::Local(append_on_owner(shard, work, acks))
        } else {
            let sent = timing::start();
            let job =
                move |owner_shard: Rc<Shard>| -> LocalFuture<(Vec<Outcome>, Option<Instant>)> {
                    timing::record_since(Stage::HopToOwner, sent);
                    let acked = append_on_owner(&owner_shard, work, acks);
                    Box::pin(async move { (acked.await, timing::start()) })
                };
            Reply::Remote(shard.send_work(owner, job).await)
        };
        replies.push((slots, reply));
    }
    let header = header.clone();
    Ok(Box::pin(async move {
        let results = join_all(
            replies
                .into_iter()
                .map(|(slots, reply)| async move {
                    let results = match reply {
                        Reply::Local(acked) => Some(acked.await),
                        Reply::Remote(rx) => rx.await.ok().map(|(results, done)| {
                            timing::record_since(Stage::HopBack, done);
                            results
                        }),
                    };
                    (slots, results)
                })
                .collect(),
        )
        .await;
        for (slots, results) in results {
            let results = results.unwrap_or_else(|| {
                vec![Outcome::error(error_code::KAFKA_STORAGE_ERROR); slots.len()]
            });
            for ((t, p), outcome) in slots.into_iter().zip(results) {
                outcomes[t][p] = outcome;
            }
        }
        if acks == 0 {
            return Response::None;
        }
        respond(&header, version, names, indexes, outcomes)
    }))
}

/// How a partition group's outcome comes back: from this shard's own future, or from another
/// shard's reply (with the time the owner finished, for stage timing).
enum Reply {
    Local(LocalFuture<Vec<Outcome>>),
    Remote(Receiver<(Vec<Outcome>, Option<Instant>)>),
}

fn respond(
    header: &RequestHeader,
    version: i16,
    names: Vec<String>,
    indexes: Vec<Vec<i32>>,
    outcomes: Vec<Vec<Outcome>>,
) -> Response {
    let responses = names
        .into_iter()
        .zip(indexes.into_iter().zip(outcomes))
        .map(|(name, (indexes, partitions))| {
            TopicProduceResponse::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partition_responses(
                    partitions
                        .into_iter()
                        .zip(indexes)
                        .map(|(o, index)| {
                            let mut partition = PartitionProduceResponse::default()
                                .with_index(index)
                                .with_error_code(o.error_code)
                                .with_base_offset(o.base_offset);
                            if version >= 5 {
                                partition.log_start_offset = o.log_start_offset;
                            }
                            partition
                        })
                        .collect(),
                )
        })
        .collect();
    Response::framed(frame_response(
        header,
        &ProduceResponse::default().with_responses(responses),
    ))
}

/// On the owner shard: validate every batch of a partition first (a partition's records are
/// appended all or nothing) and append, all before returning; the returned future waits for the
/// acknowledgement the policy requires.
fn append_on_owner(shard: &Rc<Shard>, work: Vec<Work>, acks: i16) -> LocalFuture<Vec<Outcome>> {
    let now = shard.now_ms();
    let mut outcomes = Vec::with_capacity(work.len());
    let mut waits = Vec::new();
    for (i, item) in work.into_iter().enumerate() {
        let Some(partition) = shard.partition(&item.topic, item.index) else {
            let code = shard.missing_partition_code(&item.topic, item.index);
            outcomes.push(Outcome::error(code));
            continue;
        };
        // A partition's batches are appended all or nothing: with more than one, check every
        // one before appending any (a single batch is checked by the append itself).
        if item.batches.len() > 1 {
            let max = partition.config().max_message_bytes;
            let refused = item.batches.iter().find_map(|b| {
                if b.len() > max {
                    Some(error_code::MESSAGE_TOO_LARGE)
                } else {
                    batch::validate(b)
                        .err()
                        .map(|_| error_code::CORRUPT_MESSAGE)
                }
            });
            if let Some(code) = refused {
                outcomes.push(Outcome::error(code));
                continue;
            }
        }
        let mut first: Option<ringtail_engine::AppendInfo> = None;
        let mut last_offset = Offset(-1);
        let mut failure = None;
        for batch in item.batches {
            match partition.append(batch, now) {
                Ok(info) => {
                    first.get_or_insert(info);
                    last_offset = info.last_offset;
                }
                Err(err) => {
                    failure = Some(append_error_code(&err));
                    break;
                }
            }
        }
        match (failure, first) {
            (Some(code), _) => outcomes.push(Outcome::error(code)),
            (None, Some(info)) => {
                outcomes.push(Outcome {
                    error_code: error_code::NONE,
                    base_offset: info.base_offset.get(),
                    log_start_offset: info.log_start_offset.get(),
                });
                if acks != 0 {
                    waits.push((i, partition, last_offset));
                }
            }
            (None, None) => outcomes.push(Outcome::error(error_code::CORRUPT_MESSAGE)),
        }
    }
    let acks_all = acks == -1;
    Box::pin(async move {
        let results = join_all(
            waits
                .iter()
                .map(|(_, partition, last)| partition.wait_for_ack(*last, acks_all))
                .collect(),
        )
        .await;
        for ((i, _, _), result) in waits.iter().zip(results) {
            if result.is_err() {
                outcomes[*i] = Outcome::error(error_code::KAFKA_STORAGE_ERROR);
            }
        }
        outcomes
    })
}
