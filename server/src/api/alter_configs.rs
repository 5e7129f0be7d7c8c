//! AlterConfigs (v0-2) and IncrementalAlterConfigs (v0-1) for topics: the new overrides are
//! validated, stored (the registry, or the metadata quorum in a cluster) and applied to the
//! open partitions without a restart (`controller::alter_topic_configs`).
//!
//! AlterConfigs replaces a topic's overrides with the ones given (configs left out return to
//! the broker's default), as Kafka does; IncrementalAlterConfigs changes only the ones named:
//! SET, DELETE, and APPEND / SUBTRACT for the list config `cleanup.policy`. Broker configs are
//! static here (flags and the config file): a BROKER resource answers INVALID_REQUEST, as
//! Kafka answers for configs it cannot update dynamically.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use kafka_protocol::messages::{AlterConfigsResponse, IncrementalAlterConfigsResponse};

use super::{str_bytes, Response};
use crate::controller::{alter_topic_configs, topic_configs, AlterError, ControllerError};
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{error_code, frame_response, RequestHeader};
use crate::shard::Shard;
use crate::topics::TOPIC_CONFIG_NAMES;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// One change to one config (IncrementalAlterConfigs' operations; AlterConfigs only sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Set(Option<String>),
    Delete,
    Append(Option<String>),
    Subtract(Option<String>),
    /// An operation code Kafka does not define: refused for its resource.
    Unknown(i8),
}

pub(super) struct Resource {
    kind: i8,
    name: String,
    entries: Vec<(String, Op)>,
}

pub(super) struct Request {
    resources: Vec<Resource>,
    validate_only: bool,
    /// AlterConfigs: the entries are the whole new set of overrides.
    replace: bool,
}

/// AlterConfigs' body: resources of (type, name, [(name, value)]), then validate_only.
pub(super) fn decode_alter(body: &mut Reader) -> Result<Request, DecodeError> {
    let resources = body.structs(5, |body| {
        let kind = body.i8()?;
        let name = body.string()?;
        let entries = body.structs(3, |body| {
            Ok((body.string()?, Op::Set(body.nullable_string()?)))
        })?;
        Ok(Resource {
            kind,
            name,
            entries,
        })
    })?;
    Ok(Request {
        resources,
        validate_only: body.bool()?,
        replace: true,
    })
}

/// IncrementalAlterConfigs' body: as AlterConfigs, each entry with an operation.
pub(super) fn decode_incremental(body: &mut Reader) -> Result<Request, DecodeError> {
    let resources = body.structs(5, |body| {
        let kind = body.i8()?;
        let name = body.string()?;
        let entries = body.structs(4, |body| {
            let key = body.string()?;
            let operation = body.i8()?;
            let value = body.nullable_string()?;
            let op = match operation {
                0 => Op::Set(value),
                1 => Op::Delete,
                2 => Op::Append(value),
                3 => Op::Subtract(value),
                // Answered per resource, not as a malformed request.
                _ => Op::Unknown(operation),
            };
            Ok((key, op))
        })?;
        Ok(Resource {
            kind,
            name,
            entries,
        })
    })?;
    Ok(Request {
        resources,
        validate_only: body.bool()?,
        replace: false,
    })
}

/// A refusal of one resource: (error code, message).
type Refusal = (i16, String);

fn invalid_request(message: impl Into<String>) -> Refusal {
    (error_code::INVALID_REQUEST, message.into())
}

fn invalid_config(message: impl Into<String>) -> Refusal {
    (error_code::INVALID_CONFIG, message.into())
}

/// The list items of a list config's value (`cleanup.policy`: "compact,delete").
fn items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The topic's overrides after `entries`, starting from `current` (or from nothing when
/// `replace`): the map `alter_topic_configs` validates and stores.
pub(super) fn new_overrides(
    current: &BTreeMap<String, String>,
    entries: &[(String, Op)],
    replace: bool,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some((key, _)) = entries.iter().find(|(key, _)| !seen.insert(key)) {
        return Err(invalid_request(format!(
            "Error due to duplicate config keys: {key}"
        )));
    }
    let mut next = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for (key, op) in entries {
        if !TOPIC_CONFIG_NAMES.contains(&key.as_str()) {
            return Err(invalid_config(format!(
                "unknown or unsupported topic config {key:?} (Ringtail's topic configs: {})",
                TOPIC_CONFIG_NAMES.join(", ")
            )));
        }
        let list = key == "cleanup.policy";
        let value = |value: &Option<String>| -> Result<String, Refusal> {
            match value {
                Some(v) => Ok(v.clone()),
                None => Err(invalid_request(format!(
                    "Null value not supported for : {key}"
                ))),
            }
        };
        match op {
            Op::Unknown(operation) => {
                return Err(invalid_request(format!(
                    "unknown config operation {operation} for {key}"
                )));
            }
            Op::Set(v) => {
                next.insert(key.clone(), value(v)?);
            }
            Op::Delete => {
                next.remove(key);
            }
            Op::Append(_) | Op::Subtract(_) if !list => {
                return Err(invalid_config(format!(
                    "Config value append/subtract is not allowed for config key: {key} (not a list)"
                )));
            }
            Op::Append(v) => {
                // From the value in force: the override, or the default policy.
                let mut policy = items(next.get(key).map_or("delete", String::as_str));
                for item in items(&value(v)?) {
                    if !policy.contains(&item) {
                        policy.push(item);
                    }
                }
                next.insert(key.clone(), policy.join(","));
            }
            Op::Subtract(v) => {
                let removed = items(&value(v)?);
                let policy: Vec<String> = items(next.get(key).map_or("delete", String::as_str))
                    .into_iter()
                    .filter(|item| !removed.contains(item))
                    .collect();
                next.insert(key.clone(), policy.join(","));
            }
        }
    }
    Ok(next)
}

fn alter_error(err: &AlterError) -> Refusal {
    let code = match err {
        AlterError::UnknownTopic(_) => error_code::UNKNOWN_TOPIC_OR_PARTITION,
        AlterError::Internal(_) => error_code::INVALID_REQUEST,
        AlterError::InvalidConfig(_) => error_code::INVALID_CONFIG,
        AlterError::Storage(ControllerError::Quorum(_)) => error_code::REQUEST_TIMED_OUT,
        AlterError::Storage(_) => error_code::KAFKA_STORAGE_ERROR,
    };
    (code, err.to_string())
}

async fn alter_one(
    shard: &Rc<Shard>,
    resource: &Resource,
    validate_only: bool,
    replace: bool,
) -> Result<(), Refusal> {
    match resource.kind {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => {
            let keys: Vec<&str> = resource.entries.iter().map(|(k, _)| k.as_str()).collect();
            return Err(invalid_request(format!(
                "Cannot update these configs dynamically: {}. Ringtail's broker configs are \
                 set by flag or config file and take effect at the next start",
                keys.join(", ")
            )));
        }
        other => return Err(invalid_request(format!("unknown resource type {other}"))),
    }
    let current = topic_configs(shard, &resource.name).unwrap_or_default();
    let next = new_overrides(&current, &resource.entries, replace)?;
    alter_topic_configs(shard, resource.name.clone(), next, validate_only)
        .await
        .map_err(|e| alter_error(&e))
}

/// (error code, message, resource type, resource name) for each resource, in order.
async fn run(shard: &Rc<Shard>, request: Request) -> Vec<(i16, Option<String>, i8, String)> {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let twice = request
            .resources
            .iter()
            .filter(|r| r.kind == resource.kind && r.name == resource.name)
            .count()
            > 1;
        let outcome = if twice {
            Err(invalid_request(format!(
                "resource {} named more than once in one request",
                resource.name
            )))
        } else {
            alter_one(shard, resource, request.validate_only, request.replace).await
        };
        let (code, message) = match outcome {
            Ok(()) => (error_code::NONE, None),
            Err((code, message)) => (code, Some(message)),
        };
        results.push((code, message, resource.kind, resource.name.clone()));
    }
    results
}

pub async fn handle_alter(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let request = decode_alter(&mut body)?;
    let responses = run(shard, request)
        .await
        .into_iter()
        .map(|(code, message, kind, name)| {
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes))
                .with_resource_type(kind)
                .with_resource_name(str_bytes(&name))
        })
        .collect();
    Ok(Response::framed(frame_response(
        header,
        &AlterConfigsResponse::default().with_responses(responses),
    )))
}

pub async fn handle_incremental(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    mut body: Reader,
) -> Result<Response, DecodeError> {
    let request = decode_incremental(&mut body)?;
    let responses = run(shard, request)
        .await
        .into_iter()
        .map(|(code, message, kind, name)| {
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes))
                .with_resource_type(kind)
                .with_resource_name(str_bytes(&name))
        })
        .collect();
    Ok(Response::framed(frame_response(
        header,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(key: &str, value: &str) -> (String, Op) {
        (key.to_string(), Op::Set(Some(value.to_string())))
    }

    #[test]
    fn incremental_changes_only_what_it_names() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let entries = vec![
            set("retention.ms", "2000"),
            ("segment.bytes".to_string(), Op::Delete),
            ("segment.ms".to_string(), Op::Delete), // not set: nothing to do
        ];
        let next = new_overrides(&current, &entries, false).expect("valid");
        assert_eq!(next, map(&[("retention.ms", "2000")]));
    }

    #[test]
    fn alter_configs_replaces_the_whole_set() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let next = new_overrides(&current, &[set("segment.ms", "60000")], true).expect("valid");
        assert_eq!(next, map(&[("segment.ms", "60000")]));
    }

    #[test]
    fn lists_append_and_subtract_from_the_value_in_force() {
        let none = BTreeMap::new();
        let append = vec![(
            "cleanup.policy".to_string(),
            Op::Append(Some("compact".into())),
        )];
        let next = new_overrides(&none, &append, false).expect("list");
        assert_eq!(next["cleanup.policy"], "delete,compact");
        let subtract = vec![(
            "cleanup.policy".to_string(),
            Op::Subtract(Some("compact".into())),
        )];
        let next = new_overrides(&next, &subtract, false).expect("list");
        assert_eq!(next["cleanup.policy"], "delete");
        let not_a_list = vec![("retention.ms".to_string(), Op::Append(Some("5".into())))];
        let (code, _) = new_overrides(&none, &not_a_list, false).expect_err("not a list");
        assert_eq!(code, error_code::INVALID_CONFIG);
    }

    #[test]
    fn bad_entries_are_refused_with_kafkas_codes() {
        let none = BTreeMap::new();
        let twice = vec![set("retention.ms", "1"), set("retention.ms", "2")];
        assert_eq!(
            new_overrides(&none, &twice, false).expect_err("dup").0,
            error_code::INVALID_REQUEST
        );
        let unknown = vec![set("flush.ms", "1")];
        assert_eq!(
            new_overrides(&none, &unknown, false)
                .expect_err("unknown")
                .0,
            error_code::INVALID_CONFIG
        );
        let null = vec![("retention.ms".to_string(), Op::Set(None))];
        assert_eq!(
            new_overrides(&none, &null, true).expect_err("null").0,
            error_code::INVALID_REQUEST
        );
        let op = vec![("retention.ms".to_string(), Op::Unknown(9))];
        let (code, message) = new_overrides(&none, &op, false).expect_err("op");
        assert_eq!(code, error_code::INVALID_REQUEST);
        assert!(message.contains("unknown config operation 9"), "{message}");
    }
}
