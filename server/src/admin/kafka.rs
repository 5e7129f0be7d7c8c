//! A small blocking Kafka client for `ringtail admin`: one TCP connection per broker, the
//! versions each broker serves learned from ApiVersions, requests encoded and responses decoded
//! with the `kafka-protocol` crate. Runs in the admin process, never in the broker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::AdminError;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response this tool accepts (a Metadata of many thousands of partitions fits).
const RESPONSE_BYTES_MAX: usize = 256 << 20;

struct Connection {
    addr: String,
    stream: TcpStream,
    /// API key -> (min, max) version the broker serves.
    versions: HashMap<i16, (i16, i16)>,
}

/// Where a request goes: the bootstrap broker, or a broker by node id (from Metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Bootstrap,
    Node(i32),
}

pub struct Client {
    bootstrap: String,
    /// node id -> host:port, from the last Metadata.
    addresses: HashMap<i32, String>,
    connections: HashMap<Target, Connection>,
    correlation_id: i32,
}

/// Kafka's name of an error code (UNKNOWN_TOPIC_OR_PARTITION), from the crate's table.
pub fn error_name(code: i16) -> String {
    let Some(error) = kafka_protocol::ResponseError::try_from_code(code) else {
        return "NONE".into();
    };
    if let kafka_protocol::ResponseError::Unknown(code) = error {
        return format!("error code {code}");
    }
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// A Kafka error from a response, with what was asked; Ok for NONE.
pub fn check(
    code: i16,
    message: Option<&StrBytes>,
    what: impl Into<String>,
) -> Result<(), AdminError> {
    if code == 0 {
        return Ok(());
    }
    Err(AdminError::Kafka {
        what: what.into(),
        code,
        name: error_name(code),
        message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
    })
}

impl Connection {
    fn open(addr: &str) -> Result<Connection, AdminError> {
        let connect_error = |source| AdminError::Connect {
            addr: addr.to_string(),
            source,
        };
        let resolved = addr
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| {
                connect_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name resolves to no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&resolved, Duration::from_secs(10))
            .map_err(connect_error)?;
        let _ = stream.set_read_timeout(Some(TIMEOUT));
        let _ = stream.set_write_timeout(Some(TIMEOUT));
        let _ = stream.set_nodelay(true);
        let mut connection = Connection {
            addr: addr.to_string(),
            stream,
            versions: HashMap::new(),
        };
        // ApiVersions v0: every broker answers it, whatever it serves otherwise.
        let response: ApiVersionsResponse =
            connection.exchange::<ApiVersionsRequest>(&ApiVersionsRequest::default(), 0, 0)?;
        check(response.error_code, None, format!("ApiVersions to {addr}"))?;
        connection.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(connection)
    }

    fn io_error(&self, source: std::io::Error) -> AdminError {
        AdminError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn exchange<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, AdminError> {
        let api = api_name(R::KEY);
        let decode_error = |reason: String| AdminError::Decode {
            addr: self.addr.clone(),
            api,
            reason,
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("ringtail-admin")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| decode_error(format!("cannot encode v{version}: {e}")))?;
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .map_err(|e| self.io_error(e))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| self.io_error(e))?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| decode_error(format!("a response of {size} bytes")))?;
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| self.io_error(e))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| decode_error(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(decode_error(format!(
                "correlation id {} for request {correlation_id}",
                header.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| decode_error(format!("v{version}: {e}")))?;
        if body.has_remaining() {
            return Err(decode_error(format!(
                "{} bytes left after the v{version} response",
                body.remaining()
            )));
        }
        Ok(response)
    }
}

fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::IncrementalAlterConfigs) => "IncrementalAlterConfigs",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::DeleteGroups) => "DeleteGroups",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::DescribeCluster) => "DescribeCluster",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        _ => "a request",
    }
}

/// Kafka's name for a partition's text form, "topic-p" keyed: (topic, partition).
pub type PartitionKey = (String, i32);

/// A StrBytes of `text`.
pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A Metadata topic's name ("" when the broker sent none).
pub fn topic_name(
    topic: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> String {
    topic
        .name
        .as_ref()
        .map(|n| n.0.to_string())
        .unwrap_or_default()
}

impl Client {
    /// The offset at `timestamp` (-2 earliest, -1 latest) of every partition of `topics` that
    /// has a leader, asked of each leader. A leader that cannot be asked, or a partition that
    /// answers an error, is left out: callers show it as unknown.
    pub fn offsets_at(
        &mut self,
        topics: &[&kafka_protocol::messages::metadata_response::MetadataResponseTopic],
        timestamp: i64,
    ) -> std::collections::BTreeMap<PartitionKey, i64> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
        let mut by_leader: std::collections::BTreeMap<
            i32,
            std::collections::BTreeMap<String, Vec<i32>>,
        > = Default::default();
        for topic in topics {
            for p in topic.partitions.iter().filter(|p| p.leader_id.0 >= 0) {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .entry(topic_name(topic))
                    .or_default()
                    .push(p.partition_index);
            }
        }
        let mut found = std::collections::BTreeMap::new();
        for (leader, wanted) in by_leader {
            let request_topics: Vec<ListOffsetsTopic> = wanted
                .iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect();
            let Ok(response) = self.send(Target::Node(leader), 7, |_| {
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(request_topics)
            }) else {
                continue;
            };
            for topic in response.topics {
                for p in topic.partitions.into_iter().filter(|p| p.error_code == 0) {
                    found.insert((topic.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        found
    }

    /// Connects to `bootstrap` (HOST:PORT) and learns the brokers from Metadata.
    pub fn connect(bootstrap: &str) -> Result<Client, AdminError> {
        let mut client = Client {
            bootstrap: bootstrap.to_string(),
            addresses: HashMap::new(),
            connections: HashMap::new(),
            correlation_id: 0,
        };
        client.metadata(Some(Vec::new()))?;
        Ok(client)
    }

    /// The brokers of the last Metadata: (node id, HOST:PORT), by id.
    pub fn brokers(&self) -> Vec<(i32, String)> {
        let mut brokers: Vec<(i32, String)> = self
            .addresses
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        brokers.sort();
        brokers
    }

    /// Adds a broker a response named (a group coordinator), so that it can be a target.
    pub fn learn(&mut self, node: i32, host: &str, port: i32) {
        self.addresses.insert(node, format!("{host}:{port}"));
    }

    fn connection(&mut self, target: Target) -> Result<&mut Connection, AdminError> {
        if !self.connections.contains_key(&target) {
            let addr = match target {
                Target::Bootstrap => self.bootstrap.clone(),
                Target::Node(node) => self.addresses.get(&node).cloned().ok_or_else(|| {
                    AdminError::Usage(format!("broker {node} is not in the cluster's metadata"))
                })?,
            };
            let connection = Connection::open(&addr)?;
            self.connections.insert(target, connection);
        }
        Ok(self.connections.get_mut(&target).expect("inserted"))
    }

    /// Sends a request to `target` at the highest version both sides speak, at most
    /// `ours_max`; `build` makes the request for that version.
    pub fn send<R: Request>(
        &mut self,
        target: Target,
        ours_max: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, AdminError> {
        self.correlation_id += 1;
        let correlation_id = self.correlation_id;
        let connection = self.connection(target)?;
        let (broker_min, broker_max) =
            connection
                .versions
                .get(&R::KEY)
                .copied()
                .ok_or_else(|| AdminError::Unsupported {
                    addr: connection.addr.clone(),
                    api: api_name(R::KEY),
                })?;
        let version = broker_max.min(ours_max).min(R::VERSIONS.max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(AdminError::Unsupported {
                addr: connection.addr.clone(),
                api: api_name(R::KEY),
            });
        }
        let request = build(version);
        let result = connection.exchange(&request, version, correlation_id);
        if result.is_err() {
            self.connections.remove(&target); // the stream may be mid-frame: start afresh
        }
        result
    }

    /// Metadata for `topics` (None: every topic), never creating one; refreshes the broker
    /// list.
    pub fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, AdminError> {
        let response: MetadataResponse = self.send(Target::Bootstrap, 12, |version| {
            let mut request = MetadataRequest::default();
            request.topics = match topics {
                Some(names) => Some(
                    names
                        .into_iter()
                        .map(|n| {
                            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(kafka_protocol::messages::TopicName(StrBytes::from_string(n))))
                        })
                        .collect(),
                ),
                // v0 has no null: an empty list means every topic there.
                None if version == 0 => Some(Vec::new()),
                None => None,
            };
            if version >= 4 {
                request.allow_auto_topic_creation = false;
            }
            request
        })?;
        self.addresses = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(super::error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(super::error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(super::error_name(0), "NONE");
        assert_eq!(super::error_name(-1), "UNKNOWN_SERVER_ERROR");
    }
}
