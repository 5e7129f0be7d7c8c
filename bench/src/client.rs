//! A minimal blocking Kafka client: just the requests a load generator needs (Metadata,
//! CreateTopics, ListOffsets, Produce, Fetch), classic (non-flexible) encodings that every
//! broker since Kafka 2.x accepts. One `Connection` per thread; requests may be pipelined and
//! responses come back in order.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {addr} failed: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("I/O with the broker failed: {0}")]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("broker returned error code {code} for {what}")]
    Kafka { code: i16, what: String },
    #[error("{0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Appends Kafka's classic encodings to a buffer.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.buf.push(v as u8);
        self
    }
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.i16(s.len() as i16);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    pub fn null_string(&mut self) -> &mut Self {
        self.i16(-1)
    }
}

/// Reads Kafka's classic encodings from a response, checking every length.
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(ClientError::Malformed("response truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn string(&mut self) -> Result<Option<&'a str>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        std::str::from_utf8(self.take(len as usize)?)
            .map(Some)
            .map_err(|_| ClientError::Malformed("string is not UTF-8"))
    }
    pub fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
    pub fn array_len(&mut self) -> Result<usize> {
        Ok(self.i32()?.max(0) as usize)
    }
}

pub struct Connection {
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: String,
}

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const METADATA: i16 = 3;
pub const CREATE_TOPICS: i16 = 19;

impl Connection {
    pub fn connect(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr).map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Connection {
            stream,
            next_correlation_id: 1,
            client_id: "ringtail-bench".into(),
        })
    }

    /// A second handle on the same connection, for reading responses on another thread while
    /// this one sends (correlation ids stay in order).
    pub fn try_clone(&self) -> Result<Connection> {
        Ok(Connection {
            stream: self.stream.try_clone()?,
            next_correlation_id: self.next_correlation_id,
            client_id: self.client_id.clone(),
        })
    }

    /// Frames and sends a request; returns its correlation id.
    pub fn send(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<i32> {
        self.send_parts(api_key, version, &[body])
    }

    /// Sends a request whose body is the concatenation of `parts` (a small prefix and a large
    /// pre-built batch, without copying the batch).
    pub fn send_parts(&mut self, api_key: i16, version: i16, parts: &[&[u8]]) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let body_len: usize = parts.iter().map(|p| p.len()).sum();
        let mut header = Encoder::default();
        header
            .i32(0)
            .i16(api_key)
            .i16(version)
            .i32(correlation_id)
            .string(&self.client_id);
        let size = (header.buf.len() - 4 + body_len) as i32;
        header.buf[0..4].copy_from_slice(&size.to_be_bytes());
        let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
        slices.push(io::IoSlice::new(&header.buf));
        slices.extend(parts.iter().map(|p| io::IoSlice::new(p)));
        write_all_vectored(&mut self.stream, &mut slices)?;
        Ok(correlation_id)
    }

    /// Reads the next response into `buf` (after its correlation id, which must match).
    pub fn receive(&mut self, correlation_id: i32, buf: &mut Vec<u8>) -> Result<()> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        if size < 4 {
            return Err(ClientError::Malformed("response size"));
        }
        buf.resize(size as usize, 0);
        self.stream.read_exact(buf)?;
        let got = i32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
        if got != correlation_id {
            return Err(ClientError::Malformed("correlation id out of order"));
        }
        buf.drain(0..4);
        Ok(())
    }

    pub fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>> {
        let id = self.send(api_key, version, body)?;
        let mut buf = Vec::new();
        self.receive(id, &mut buf)?;
        Ok(buf)
    }

    /// Number of partitions of `topic`, or None if it does not exist (Metadata v4, asking the
    /// broker not to create it).
    pub fn partition_count(&mut self, topic: &str) -> Result<Option<usize>> {
        let mut body = Encoder::default();
        body.i32(1).string(topic).i8(0);
        let response = self.call(METADATA, 4, &body.buf)?;
        let mut d = Decoder::new(&response);
        d.i32()?; // throttle
        for _ in 0..d.array_len()? {
            d.i32()?;
            d.string()?;
            d.i32()?;
            d.string()?;
        }
        d.string()?; // cluster id
        d.i32()?; // controller
        let topics = d.array_len()?;
        for _ in 0..topics {
            let error = d.i16()?;
            let name = d.string()?;
            d.i8()?; // internal
            let partitions = d.array_len()?;
            for _ in 0..partitions {
                d.i16()?;
                d.i32()?;
                d.i32()?;
                let replicas = d.array_len()?;
                for _ in 0..replicas {
                    d.i32()?;
                }
                let isr = d.array_len()?;
                for _ in 0..isr {
                    d.i32()?;
                }
            }
            if name == Some(topic) {
                return Ok(match error {
                    0 => Some(partitions),
                    3 => None,
                    code => {
                        return Err(ClientError::Kafka {
                            code,
                            what: format!("metadata of {topic}"),
                        })
                    }
                });
            }
        }
        Ok(None)
    }

    /// Creates `topic` with `partitions` (CreateTopics v2); an existing topic is fine.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<()> {
        let mut body = Encoder::default();
        body.i32(1)
            .string(topic)
            .i32(partitions)
            .i16(1)
            .i32(0)
            .i32(0)
            .i32(30_000)
            .i8(0);
        let response = self.call(CREATE_TOPICS, 2, &body.buf)?;
        let mut d = Decoder::new(&response);
        d.i32()?; // throttle
        d.array_len()?;
        d.string()?;
        match d.i16()? {
            0 | 36 => Ok(()),
            code => Err(ClientError::Kafka {
                code,
                what: format!("creating {topic}"),
            }),
        }
    }

    /// The offset ListOffsets v1 gives for `timestamp` (-2 earliest, -1 latest).
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let mut body = Encoder::default();
        body.i32(-1)
            .i32(1)
            .string(topic)
            .i32(1)
            .i32(partition)
            .i64(timestamp);
        let response = self.call(LIST_OFFSETS, 1, &body.buf)?;
        let mut d = Decoder::new(&response);
        d.array_len()?;
        d.string()?;
        d.array_len()?;
        d.i32()?;
        let code = d.i16()?;
        if code != 0 {
            return Err(ClientError::Kafka {
                code,
                what: format!("list offsets of {topic}-{partition}"),
            });
        }
        d.i64()?;
        d.i64()
    }
}

fn write_all_vectored(
    stream: &mut TcpStream,
    mut slices: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = stream.write_vectored(slices)?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Ensures `topic` exists with at least one partition; returns its partition count.
pub fn ensure_topic(addr: &str, topic: &str, partitions: i32) -> Result<usize> {
    let mut connection = Connection::connect(addr)?;
    if let Some(count) = connection.partition_count(topic)? {
        return Ok(count);
    }
    connection.create_topic(topic, partitions)?;
    for _ in 0..100 {
        if let Some(count) = connection.partition_count(topic)? {
            return Ok(count);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ClientError::Malformed(
        "topic did not appear after creation",
    ))
}
