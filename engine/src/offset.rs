//! The values of a log that must not be mixed up, as types: a record's [`Offset`] in its
//! partition, a byte position ([`FilePos`]) in a segment file, and a partition
//! [`LeaderEpoch`].
//!
//! Plain `Copy` wrappers with no runtime cost. Arithmetic is explicit and named (`plus`,
//! `since`), so an offset is never added to a byte position by accident. Exclusive ends are
//! named as such where they are stored (`next_offset`, `log_end`).

use std::fmt;

/// A Kafka offset: the position of a record in its partition's log (0-based, dense).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The offset `n` records later (or earlier, for a negative `n`).
    pub const fn plus(self, n: i64) -> Offset {
        Offset(self.0 + n)
    }

    /// The offset right after this one: the exclusive end of a range ending here.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    /// How many records lie from `earlier` up to this offset.
    pub const fn since(self, earlier: Offset) -> i64 {
        self.0 - earlier.0
    }
}

/// `offset + n`: the offset `n` records later.
impl std::ops::Add<i64> for Offset {
    type Output = Offset;
    fn add(self, n: i64) -> Offset {
        self.plus(n)
    }
}

/// `offset - n`: the offset `n` records earlier.
impl std::ops::Sub<i64> for Offset {
    type Output = Offset;
    fn sub(self, n: i64) -> Offset {
        self.plus(-n)
    }
}

/// `later - earlier`: how many records lie between two offsets.
impl std::ops::Sub<Offset> for Offset {
    type Output = i64;
    fn sub(self, earlier: Offset) -> i64 {
        self.since(earlier)
    }
}

/// Offsets compare with the wire's plain `int64` offsets (a request's fetch offset, a test's
/// expected value); never with byte positions or epochs.
impl PartialEq<i64> for Offset {
    fn eq(&self, other: &i64) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<i64> for Offset {
    fn partial_cmp(&self, other: &i64) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A byte position in one segment file (or a length from its start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePos(pub u64);

impl FilePos {
    pub const ZERO: FilePos = FilePos(0);

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The position `bytes` further on.
    pub const fn plus(self, bytes: u64) -> FilePos {
        FilePos(self.0 + bytes)
    }

    /// Bytes from `earlier` up to this position.
    pub const fn since(self, earlier: FilePos) -> u64 {
        self.0 - earlier.0
    }
}

impl fmt::Display for FilePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition leader epoch (KIP-101): stamped into every batch the leader appends, so a
/// follower can find where its log diverged from a new leader's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
