//! Idempotent-producer state of one partition: for each producer id, its epoch and the last
//! five batches it appended, so that a retried batch is recognised and answered with its
//! original offsets instead of being appended twice, exactly as a Kafka broker does.
//!
//! Owned by the partition (on its shard); no locks. The state is derived from batch headers
//! only (producer id, epoch, base sequence, last offset delta, max timestamp), so it is rebuilt
//! after a crash by reading headers from the last snapshot onwards (`snapshot`).
//!
//! Kafka's rules, in the order Kafka applies them to a batch with producer id >= 0:
//! 1. epoch older than the producer's: INVALID_PRODUCER_EPOCH;
//! 2. a newer epoch must start at sequence 0 (OUT_OF_ORDER_SEQUENCE_NUMBER otherwise);
//! 3. same epoch: a batch whose sequence range equals one of the last five is a duplicate;
//! 4. same epoch: the first sequence must follow the last one (wrapping after i32::MAX);
//! 5. an unknown producer id must start at sequence 0 (UNKNOWN_PRODUCER_ID otherwise).

pub mod snapshot;

use std::collections::{HashMap, VecDeque};

use crate::format::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` ceiling for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

/// One appended batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Newest last.
    pub batches: VecDeque<BatchMeta>,
    /// Max timestamp of its newest batch, for expiry.
    pub last_timestamp_ms: i64,
}

/// Why a batch is refused; nothing is appended for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {first} does not follow {last}")]
    OutOfOrderSequence {
        producer_id: i64,
        first: i32,
        last: i32,
    },
    #[error("unknown producer {producer_id} with sequence {first} (a new producer starts at 0)")]
    UnknownProducerId { producer_id: i64, first: i32 },
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it (a non-idempotent batch, or the next in sequence).
    Append,
    /// Already appended: answer with these offsets, append nothing.
    Duplicate(BatchMeta),
}

/// The sequence number of the last record of a batch starting at `first` (sequences wrap from
/// i32::MAX to 0).
pub fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    /// Applies Kafka's rules to a batch before it is appended.
    pub fn check(&self, header: &BatchHeader) -> Result<Check, SequenceError> {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return Ok(Check::Append);
        }
        let first = header.base_sequence;
        let last = last_sequence(first, header.last_offset_delta);
        let Some(entry) = self.producers.get(&producer_id) else {
            if first != 0 {
                return Err(SequenceError::UnknownProducerId { producer_id, first });
            }
            return Ok(Check::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if first != 0 {
                return Err(SequenceError::OutOfOrderSequence {
                    producer_id,
                    first,
                    last: -1,
                });
            }
            return Ok(Check::Append);
        }
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(Check::Duplicate(*original));
        }
        let previous = entry.batches.back().map_or(-1, |b| b.last_sequence);
        if first != next_sequence(previous) {
            return Err(SequenceError::OutOfOrderSequence {
                producer_id,
                first,
                last: previous,
            });
        }
        Ok(Check::Append)
    }

    /// Records a batch that was appended (or found in the log while rebuilding) at its offsets.
    /// `now_ms` is the broker's clock at the append (the batch's own timestamp when rebuilding);
    /// the later of it and the batch's timestamp counts as the producer's last activity.
    pub fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if header.producer_id < 0 {
            return;
        }
        let meta = BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence, header.last_offset_delta),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        };
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp_ms: now_ms.max(header.max_timestamp),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        entry.last_timestamp_ms = entry
            .last_timestamp_ms
            .max(now_ms)
            .max(header.max_timestamp);
    }

    /// Forgets producers idle since before `now_ms - expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`). Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms - entry.last_timestamp_ms <= expiration_ms);
        before - self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, first: i32, records: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            size: 100,
            partition_leader_epoch: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1000,
            max_timestamp: 1000,
            producer_id,
            producer_epoch: epoch,
            base_sequence: first,
            records_count: records,
            crc: 0,
        }
    }

    #[test]
    fn in_sequence_batches_append_and_retries_are_duplicates() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 5, 100);
        assert_eq!(state.check(&first), Ok(Check::Append));
        state.record(&first, 0);
        let second = header(7, 0, 5, 3, 105);
        assert_eq!(state.check(&second), Ok(Check::Append));
        state.record(&second, 0);
        // A retry of either is answered with the original offsets.
        match state.check(&header(7, 0, 0, 5, 0)) {
            Ok(Check::Duplicate(meta)) => {
                assert_eq!((meta.first_offset, meta.last_offset), (100, 104))
            }
            other => panic!("{other:?}"),
        }
        match state.check(&header(7, 0, 5, 3, 0)) {
            Ok(Check::Duplicate(meta)) => assert_eq!(meta.first_offset, 105),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gaps_old_epochs_and_unknown_producers_are_refused() {
        let mut state = ProducerState::default();
        state.record(&header(7, 2, 0, 5, 0), 0);
        assert!(matches!(
            state.check(&header(7, 2, 6, 1, 0)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            state.check(&header(7, 1, 5, 1, 0)),
            Err(SequenceError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            state.check(&header(8, 0, 3, 1, 0)),
            Err(SequenceError::UnknownProducerId { .. })
        ));
        // A new epoch must restart at 0.
        assert!(matches!(
            state.check(&header(7, 3, 5, 1, 0)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert_eq!(state.check(&header(7, 3, 0, 1, 0)), Ok(Check::Append));
        state.record(&header(7, 3, 0, 1, 5), 0);
        assert_eq!(
            state.get(7).map(|e| (e.epoch, e.batches.len())),
            Some((3, 1))
        );
        // Non-idempotent batches are not checked at all.
        assert_eq!(state.check(&header(-1, -1, -1, 1, 0)), Ok(Check::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.record(&header(1, 0, i * 2, 2, i64::from(i) * 2), 0);
        }
        assert!(matches!(
            state.check(&header(1, 0, 2, 2, 0)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            state.check(&header(1, 0, 4, 2, 0)),
            Ok(Check::Duplicate(_))
        ));
        assert!(matches!(
            state.check(&header(1, 0, 14, 2, 0)),
            Ok(Check::Append)
        ));
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut state = ProducerState::default();
        state.record(&header(1, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(state.check(&header(1, 0, 0, 3, 2)), Ok(Check::Append));
        assert_eq!(last_sequence(i32::MAX, 2), 1);
        assert!(matches!(
            state.check(&header(1, 0, 1, 1, 2)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn idle_producers_expire() {
        let mut state = ProducerState::default();
        state.record(&header(1, 0, 0, 1, 0), 0);
        assert_eq!(state.expire(1000 + 86_400_000, 86_400_000), 0);
        assert_eq!(state.expire(1001 + 86_400_000, 86_400_000), 1);
        assert!(state.is_empty());
    }
}
