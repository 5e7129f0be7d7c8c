//! Topic configs: which ones a topic may override, the effective log settings of a topic, and
//! DescribeConfigs (v0-4) for topics and the broker.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use ringtail_engine::LogConfig;

use super::{str_bytes, Response};
use crate::config::Config;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{
    error_code, finish_frame, frame_response, put_response_header, RequestHeader,
};
use crate::shard::Shard;
use crate::topics::{CleanupPolicy, Topic, TOPIC_CONFIG_NAMES};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;

/// The type DescribeConfigs reports for each topic config.
fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => TYPE_STRING,
        "max.message.bytes" | "segment.bytes" => TYPE_INT,
        _ => TYPE_LONG,
    }
}

/// The broker's defaults overridden by the topic's own configs.
pub fn effective_log_config(config: &Config, topic: &Topic) -> LogConfig {
    topic.configs.apply(&config.topics.log)
}

fn topic_entries(config: &Config, topic: &Topic) -> Vec<(String, String, i8, i8)> {
    let log = effective_log_config(config, topic);
    let value = |key: &str| -> String {
        match key {
            "cleanup.policy" => topic
                .configs
                .cleanup_policy
                .unwrap_or(CleanupPolicy::Delete)
                .name()
                .to_string(),
            "max.message.bytes" => log.max_message_bytes.to_string(),
            "retention.bytes" => log.retention_bytes.map_or(-1, |v| v as i64).to_string(),
            "retention.ms" => log.retention_ms.unwrap_or(-1).to_string(),
            "segment.bytes" => log.segment_bytes.to_string(),
            "segment.ms" => log.segment_ms.to_string(),
            _ => String::new(),
        }
    };
    TOPIC_CONFIG_NAMES
        .iter()
        .map(|&key| {
            let source = if topic.configs.is_set(key) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            (key.to_string(), value(key), source, config_type(key))
        })
        .collect()
}

fn broker_entries(config: &Config) -> Vec<(String, String, i8, i8)> {
    let log = &config.topics.log;
    vec![
        (
            "auto.create.topics.enable".into(),
            config.topics.auto_create_topics_enable.to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_BOOLEAN,
        ),
        (
            "num.partitions".into(),
            config.topics.num_partitions.to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_INT,
        ),
        (
            "log.retention.ms".into(),
            log.retention_ms.unwrap_or(-1).to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_LONG,
        ),
        (
            "log.retention.bytes".into(),
            log.retention_bytes.map_or(-1, |v| v as i64).to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_LONG,
        ),
        (
            "log.segment.bytes".into(),
            log.segment_bytes.to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_INT,
        ),
        (
            "message.max.bytes".into(),
            log.max_message_bytes.to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_INT,
        ),
        (
            "socket.request.max.bytes".into(),
            config.socket_request_max_bytes.to_string(),
            SOURCE_STATIC_BROKER,
            TYPE_INT,
        ),
    ]
}

/// (resource type, resource name, config names or None for all).
pub(super) type DescribeRequest = Vec<(i8, String, Option<Vec<String>>)>;

pub(super) fn decode_describe(body: &mut Reader) -> Result<DescribeRequest, DecodeError> {
    let resources = body.structs(4, |body| {
        let resource_type = body.i8()?;
        let resource_name = body.string()?;
        let keys: Option<Vec<String>> = match body.nullable_array(2)? {
            None => None,
            Some(n) => Some((0..n).map(|_| body.string()).collect::<Result<_, _>>()?),
        };
        Ok((resource_type, resource_name, keys))
    })?;
    Ok(resources)
}

pub async fn handle_describe(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let resources = decode_describe(&mut body)?;
    let mut results = Vec::with_capacity(resources.len());
    let config = &shard.shared.config;
    for (resource_type, resource_name, keys) in resources {
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource_type)
            .with_resource_name(str_bytes(&resource_name));
        let entries = match resource_type {
            RESOURCE_TOPIC => match shard.registry().get(&resource_name) {
                Some(topic) => Ok(topic_entries(config, topic)),
                None => Err((
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("unknown topic {resource_name:?}"),
                )),
            },
            RESOURCE_BROKER if resource_name.is_empty() || resource_name == "0" => {
                Ok(broker_entries(config))
            }
            RESOURCE_BROKER => Err((
                error_code::INVALID_REQUEST,
                format!("unknown broker {resource_name:?}"),
            )),
            other => Err((
                error_code::INVALID_REQUEST,
                format!("unsupported resource type {other}"),
            )),
        };
        match entries {
            Ok(entries) => {
                result.configs = entries
                    .into_iter()
                    .filter(|(key, ..)| keys.as_ref().is_none_or(|k| k.contains(key)))
                    .map(|(key, value, source, kind)| {
                        let mut entry = DescribeConfigsResourceResult::default()
                            .with_name(str_bytes(&key))
                            .with_value(Some(str_bytes(&value)));
                        // v0 carries `is_default` instead, derived from it when encoding.
                        entry.config_source = source;
                        if header.api_version >= 3 {
                            entry.config_type = kind;
                        }
                        entry
                    })
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        results.push(result);
    }
    if header.api_version == 0 {
        for result in &results {
            crate::metrics::api_error(header.api_key, result.error_code);
        }
        return Ok(Response::Frame(encode_v0(header, &results)));
    }
    Ok(Response::framed(frame_response(
        header,
        &DescribeConfigsResponse::default().with_results(results),
    )))
}

/// DescribeConfigs v0, which Kafka's current schema (and so the codec) no longer has: each
/// entry carries `is_default` where v1 has `config_source` and synonyms.
fn encode_v0(header: &RequestHeader, results: &[DescribeConfigsResult]) -> Bytes {
    fn string(buf: &mut BytesMut, text: Option<&str>) {
        match text {
            Some(text) => {
                buf.put_i16(text.len() as i16);
                buf.put_slice(text.as_bytes());
            }
            None => buf.put_i16(-1),
        }
    }
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    put_response_header(&mut buf, header);
    buf.put_i32(0); // throttle_time_ms
    buf.put_i32(results.len() as i32);
    for result in results {
        buf.put_i16(result.error_code);
        string(&mut buf, result.error_message.as_deref());
        buf.put_i8(result.resource_type);
        string(&mut buf, Some(&result.resource_name));
        buf.put_i32(result.configs.len() as i32);
        for entry in &result.configs {
            string(&mut buf, Some(&entry.name));
            string(&mut buf, entry.value.as_deref());
            buf.put_u8(u8::from(entry.read_only));
            buf.put_u8(u8::from(entry.config_source == SOURCE_DEFAULT));
            buf.put_u8(u8::from(entry.is_sensitive));
        }
    }
    finish_frame(buf)
}
