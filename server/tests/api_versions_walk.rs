//! Walks the whole ApiVersions table of the real broker: for every API key and every version it
//! advertises, a valid request (built with `kafka-protocol`'s encoders for that version, or by
//! hand for the old versions Kafka's current schemas dropped) is sent, and the response must
//! arrive on the same connection and decode completely at that version. A broker that
//! advertises a version it cannot answer (it closes the connection, or its bytes do not match
//! the schema) fails here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["--data-dir", dir.path().to_str().expect("utf-8 path")])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
            "--metrics-listen",
            "off",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start ringtail");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        port,
        _dir: dir,
    }
}

struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Connection {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `body` (already encoded at `version`) and returns the response body after its
    /// header, or why there was none.
    fn call(&mut self, key: ApiKey, version: i16, body: &[u8]) -> Result<Bytes, String> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("api-walk")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, key.request_header_version(version))
            .map_err(|e| format!("request header: {e}"))?;
        frame.put_slice(body);
        let size = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("send: {e}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| format!("no response (connection closed?): {e}"))?;
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream
            .read_exact(&mut response)
            .map_err(|e| format!("short response: {e}"))?;
        let mut response = Bytes::from(response);
        let header = ResponseHeader::decode(&mut response, key.response_header_version(version))
            .map_err(|e| format!("response header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!(
                "correlation id {} answered {}",
                self.correlation_id, header.correlation_id
            ));
        }
        Ok(response)
    }
}

fn encoded<R: Encodable>(request: &R, version: i16) -> Result<Vec<u8>, String> {
    let mut body = BytesMut::new();
    request
        .encode(&mut body, version)
        .map_err(|e| format!("kafka-protocol cannot encode the request: {e}"))?;
    Ok(body.to_vec())
}

/// Decodes the whole response body as `R` at `version`: every byte must be accounted for.
fn decodes<R: Decodable>(mut body: Bytes, version: i16) -> Result<(), String> {
    R::decode(&mut body, version).map_err(|e| format!("response does not decode: {e}"))?;
    if body.has_remaining() {
        return Err(format!(
            "{} bytes left after the response",
            body.remaining()
        ));
    }
    Ok(())
}

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

/// Old versions whose schemas Kafka dropped (and so `kafka-protocol`): their bytes, by hand.
mod by_hand {
    use bytes::{Buf, BufMut, Bytes, BytesMut};

    pub fn string(buf: &mut BytesMut, text: &str) {
        buf.put_i16(text.len() as i16);
        buf.put_slice(text.as_bytes());
    }

    pub struct Cursor(pub Bytes);

    impl Cursor {
        pub fn need(&self, n: usize) -> Result<(), String> {
            match self.0.remaining() >= n {
                true => Ok(()),
                false => Err(format!("response truncated: needed {n} more bytes")),
            }
        }
        pub fn i8(&mut self) -> Result<i8, String> {
            self.need(1)?;
            Ok(self.0.get_i8())
        }
        pub fn i16(&mut self) -> Result<i16, String> {
            self.need(2)?;
            Ok(self.0.get_i16())
        }
        pub fn i32(&mut self) -> Result<i32, String> {
            self.need(4)?;
            Ok(self.0.get_i32())
        }
        pub fn i64(&mut self) -> Result<i64, String> {
            self.need(8)?;
            Ok(self.0.get_i64())
        }
        pub fn string(&mut self) -> Result<Option<String>, String> {
            let len = self.i16()?;
            if len < 0 {
                return Ok(None);
            }
            self.need(len as usize)?;
            let bytes = self.0.split_to(len as usize);
            String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|e| e.to_string())
        }
        pub fn done(&self) -> Result<(), String> {
            match self.0.remaining() {
                0 => Ok(()),
                n => Err(format!("{n} bytes left after the response")),
            }
        }
    }

    /// OffsetCommit v0 / v1 request for group "walk", topic "walk-topic" partition 0.
    pub fn offset_commit(version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        string(&mut buf, "walk");
        if version == 1 {
            buf.put_i32(-1); // generation
            string(&mut buf, ""); // member id
        }
        buf.put_i32(1);
        string(&mut buf, "walk-topic");
        buf.put_i32(1);
        buf.put_i32(0); // partition
        buf.put_i64(1); // offset
        if version == 1 {
            buf.put_i64(-1); // commit timestamp
        }
        string(&mut buf, ""); // metadata
        buf.to_vec()
    }

    /// OffsetCommit v0-1 response: [topic, [partition, error code]].
    pub fn offset_commit_response(body: Bytes) -> Result<(), String> {
        let mut c = Cursor(body);
        for _ in 0..c.i32()? {
            c.string()?;
            for _ in 0..c.i32()? {
                c.i32()?;
                c.i16()?;
            }
        }
        c.done()
    }

    /// OffsetFetch v0 request: group "walk", topic "walk-topic" partition 0.
    pub fn offset_fetch() -> Vec<u8> {
        let mut buf = BytesMut::new();
        string(&mut buf, "walk");
        buf.put_i32(1);
        string(&mut buf, "walk-topic");
        buf.put_i32(1);
        buf.put_i32(0);
        buf.to_vec()
    }

    /// OffsetFetch v0 response: [topic, [partition, offset, metadata, error code]].
    pub fn offset_fetch_response(body: Bytes) -> Result<(), String> {
        let mut c = Cursor(body);
        for _ in 0..c.i32()? {
            c.string()?;
            for _ in 0..c.i32()? {
                c.i32()?;
                c.i64()?;
                c.string()?;
                c.i16()?;
            }
        }
        c.done()
    }

    /// DescribeConfigs v0 request: the broker's configs.
    pub fn describe_configs() -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(1);
        buf.put_i8(4); // broker
        string(&mut buf, "0");
        buf.put_i32(-1); // all keys
        buf.to_vec()
    }

    /// DescribeConfigs v0 response: throttle, [error, message, type, name, [name, value,
    /// read only, is default, is sensitive]]. Returns the number of config entries.
    pub fn describe_configs_response(body: Bytes) -> Result<usize, String> {
        let mut c = Cursor(body);
        c.i32()?;
        let mut entries = 0;
        for _ in 0..c.i32()? {
            let code = c.i16()?;
            if code != 0 {
                return Err(format!("DescribeConfigs v0 answered error {code}"));
            }
            c.string()?;
            c.i8()?;
            c.string()?;
            for _ in 0..c.i32()? {
                c.string()?;
                c.string()?;
                for _ in 0..3 {
                    let flag = c.i8()?;
                    if !(0..=1).contains(&flag) {
                        return Err(format!("boolean byte {flag}"));
                    }
                }
                entries += 1;
            }
        }
        c.done()?;
        Ok(entries)
    }
}

/// One valid request of `key` at `version`, sent, and its response decoded.
fn exchange(conn: &mut Connection, key: ApiKey, v: i16) -> Result<(), String> {
    macro_rules! via_codec {
        ($request:expr, $response:ty) => {{
            let body = encoded(&$request, v)?;
            decodes::<$response>(conn.call(key, v, &body)?, v)
        }};
    }
    match key {
        ApiKey::Produce => via_codec!(
            ProduceRequest::default().with_acks(1).with_timeout_ms(1000),
            ProduceResponse
        ),
        ApiKey::Fetch => {
            let mut request = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1);
            if v <= 14 {
                request.replica_id = BrokerId(-1);
            }
            via_codec!(request, FetchResponse)
        }
        ApiKey::ListOffsets => via_codec!(
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)),
            ListOffsetsResponse
        ),
        ApiKey::Metadata => via_codec!(
            MetadataRequest::default().with_topics(Some(vec![])),
            MetadataResponse
        ),
        ApiKey::OffsetCommit if v < 2 => {
            by_hand::offset_commit_response(conn.call(key, v, &by_hand::offset_commit(v))?)
        }
        ApiKey::OffsetCommit => {
            let partition = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1);
            let topic = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("walk-topic")))
                .with_partitions(vec![partition]);
            via_codec!(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(s("walk")))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![topic]),
                OffsetCommitResponse
            )
        }
        ApiKey::OffsetFetch if v == 0 => {
            by_hand::offset_fetch_response(conn.call(key, v, &by_hand::offset_fetch())?)
        }
        ApiKey::OffsetFetch if v < 8 => {
            let topic = offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("walk-topic")))
                .with_partition_indexes(vec![0]);
            via_codec!(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("walk")))
                    .with_topics(Some(vec![topic])),
                OffsetFetchResponse
            )
        }
        ApiKey::OffsetFetch => {
            let groups = ["walk", "walk-other"]
                .into_iter()
                .map(|g| {
                    let topic = offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("walk-topic")))
                        .with_partition_indexes(vec![0, 1]);
                    let mut group = offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(s(g)))
                        .with_topics(Some(vec![topic]));
                    if v >= 9 {
                        group.member_id = Some(s("member"));
                        group.member_epoch = 3;
                    }
                    group
                })
                .collect();
            via_codec!(
                OffsetFetchRequest::default().with_groups(groups),
                OffsetFetchResponse
            )
        }
        ApiKey::FindCoordinator => {
            let mut request = FindCoordinatorRequest::default();
            if v >= 4 {
                request.coordinator_keys = vec![s("walk")];
            } else {
                request.key = s("walk");
            }
            via_codec!(request, FindCoordinatorResponse)
        }
        ApiKey::JoinGroup => {
            // An empty group id is refused at once (INVALID_GROUP_ID): no join phase to wait.
            let mut request = JoinGroupRequest::default()
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"));
            if v >= 8 {
                // Not null: a decoder that skipped it would misread what follows.
                request.reason = Some(s("walking the table"));
            }
            via_codec!(request, JoinGroupResponse)
        }
        ApiKey::Heartbeat => via_codec!(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("walk-none")))
                .with_member_id(s("nobody")),
            HeartbeatResponse
        ),
        ApiKey::LeaveGroup => {
            let mut request = LeaveGroupRequest::default().with_group_id(GroupId(s("walk-none")));
            if v >= 3 {
                let mut member =
                    leave_group_request::MemberIdentity::default().with_member_id(s("nobody"));
                if v >= 5 {
                    member.reason = Some(s("walking the table"));
                }
                request.members = vec![member];
            } else {
                request.member_id = s("nobody");
            }
            via_codec!(request, LeaveGroupResponse)
        }
        ApiKey::SyncGroup => {
            let mut request = SyncGroupRequest::default()
                .with_group_id(GroupId(s("walk-none")))
                .with_member_id(s("nobody"));
            if v >= 5 {
                request.protocol_type = Some(s("consumer"));
                request.protocol_name = Some(s("range"));
            }
            via_codec!(request, SyncGroupResponse)
        }
        ApiKey::DescribeGroups => via_codec!(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("walk"))]),
            DescribeGroupsResponse
        ),
        ApiKey::ListGroups => {
            let mut request = ListGroupsRequest::default();
            if v >= 4 {
                request.states_filter = vec![s("Stable")];
            }
            if v >= 5 {
                request.types_filter = vec![s("classic")];
            }
            via_codec!(request, ListGroupsResponse)
        }
        ApiKey::ApiVersions => {
            let mut request = ApiVersionsRequest::default();
            if v >= 3 {
                request.client_software_name = s("api-walk");
                request.client_software_version = s("1");
            }
            via_codec!(request, ApiVersionsResponse)
        }
        ApiKey::CreateTopics => via_codec!(
            CreateTopicsRequest::default().with_timeout_ms(1000),
            CreateTopicsResponse
        ),
        ApiKey::DeleteTopics => via_codec!(
            DeleteTopicsRequest::default().with_timeout_ms(1000),
            DeleteTopicsResponse
        ),
        ApiKey::InitProducerId => via_codec!(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            InitProducerIdResponse
        ),
        ApiKey::DescribeConfigs if v == 0 => {
            let entries = by_hand::describe_configs_response(conn.call(
                key,
                v,
                &by_hand::describe_configs(),
            )?)?;
            match entries {
                0 => Err("DescribeConfigs v0 listed no broker config".into()),
                _ => Ok(()),
            }
        }
        ApiKey::DescribeConfigs => {
            let resource = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("0"));
            via_codec!(
                DescribeConfigsRequest::default().with_resources(vec![resource]),
                DescribeConfigsResponse
            )
        }
        ApiKey::DeleteGroups => via_codec!(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("walk-none"))]),
            DeleteGroupsResponse
        ),
        ApiKey::DescribeCluster => via_codec!(
            DescribeClusterRequest::default().with_endpoint_type(1),
            DescribeClusterResponse
        ),
        ApiKey::AlterConfigs => {
            let config = alter_configs_request::AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("1000")));
            let resource = alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("walk-none"))
                .with_configs(vec![config]);
            via_codec!(
                AlterConfigsRequest::default().with_resources(vec![resource]),
                AlterConfigsResponse
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let config = incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(1)
                .with_value(None);
            let resource = incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("walk-none"))
                .with_configs(vec![config]);
            via_codec!(
                IncrementalAlterConfigsRequest::default().with_resources(vec![resource]),
                IncrementalAlterConfigsResponse
            )
        }
        other => Err(format!(
            "the broker advertises {other:?}, which this walk has no request for: add one"
        )),
    }
}

#[test]
fn every_advertised_version_of_every_api_is_answered() {
    let broker = start_broker();
    let mut conn = Connection::open(broker.port);
    let table = conn
        .call(ApiKey::ApiVersions, 0, &[])
        .and_then(|mut body| ApiVersionsResponse::decode(&mut body, 0).map_err(|e| e.to_string()))
        .expect("ApiVersions v0");
    assert_eq!(table.error_code, 0);
    assert!(table.api_keys.len() >= 20, "{} APIs", table.api_keys.len());
    let mut failures = Vec::new();
    let mut answered = 0;
    for api in &table.api_keys {
        let key = ApiKey::try_from(api.api_key).expect("a known API key");
        for version in api.min_version..=api.max_version {
            // One connection per exchange: a refusal closes it, and the next must not suffer.
            let mut conn = Connection::open(broker.port);
            match exchange(&mut conn, key, version) {
                Ok(()) => answered += 1,
                Err(reason) => failures.push(format!("{key:?} v{version}: {reason}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} advertised versions failed:\n{}",
        failures.len(),
        failures.len() + answered,
        failures.join("\n")
    );
}
