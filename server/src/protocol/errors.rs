//! The one place engine errors become Kafka error codes.

use ringtail_engine::producer::SequenceError;
use ringtail_engine::{AppendError, ReadError};

use super::error_code;

pub fn append_error_code(err: &AppendError) -> i16 {
    match err {
        AppendError::Corrupt(_) => error_code::CORRUPT_MESSAGE,
        AppendError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        AppendError::Storage(_) => error_code::KAFKA_STORAGE_ERROR,
        AppendError::Sequence(err) => match err {
            SequenceError::OutOfOrderSequence { .. } => error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            SequenceError::InvalidProducerEpoch { .. } => error_code::INVALID_PRODUCER_EPOCH,
            SequenceError::UnknownProducerId { .. } => error_code::UNKNOWN_PRODUCER_ID,
        },
    }
}

pub fn read_error_code(err: &ReadError) -> i16 {
    match err {
        ReadError::OffsetOutOfRange { .. } => error_code::OFFSET_OUT_OF_RANGE,
        ReadError::Storage(_) => error_code::KAFKA_STORAGE_ERROR,
        ReadError::Inconsistent { .. } => error_code::UNKNOWN_SERVER_ERROR,
    }
}
