//! Formats the engine reads and writes: Kafka's v2 record-batch header (stored verbatim).

pub mod batch;
