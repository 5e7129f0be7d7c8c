//! The one table of the APIs this broker serves: for each API key, the decoder (used alone by
//! `decode_only`, for the decode tests and the fuzz targets) and the handler (used by
//! `handle`). The versions served are `protocol::APIS` (what ApiVersions reports and request
//! headers are checked against); a test checks both tables name the same keys.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use super::*;
use crate::protocol::reader::{DecodeError, Reader};
use crate::protocol::{key, RequestHeader};
use crate::shard::Shard;

/// A handler's answer, borrowing the shard, the header and the client's host.
pub type Handling<'a> = Pin<Box<dyn Future<Output = Result<Response, DecodeError>> + 'a>>;

/// Runs one request: (shard, header, body, the client's host).
pub type Handler = for<'a> fn(&'a Rc<Shard>, &'a RequestHeader, Reader, &'a str) -> Handling<'a>;

pub struct Api {
    pub key: i16,
    /// Decodes the request body without running it.
    pub decode: fn(i16, &mut Reader) -> Result<(), DecodeError>,
    /// Decodes and runs the request. None: taken in elsewhere (Produce, by `take`; ApiVersions,
    /// answered before the version check).
    pub handle: Option<Handler>,
}

/// A handler that needs neither the client's host nor to wait.
macro_rules! handler {
    ($name:ident, |$shard:ident, $header:ident, $body:ident, $host:ident| $run:expr) => {
        fn $name<'a>(
            $shard: &'a Rc<Shard>,
            $header: &'a RequestHeader,
            $body: Reader,
            $host: &'a str,
        ) -> Handling<'a> {
            let _ = $host;
            Box::pin(async move { $run })
        }
    };
}

handler!(fetch_, |s, h, b, _c| fetch::handle(s, h, b).await);
handler!(list_offsets_, |s, h, b, _c| list_offsets::handle(s, h, b)
    .await);
handler!(metadata_, |s, h, b, _c| metadata::handle(s, h, b).await);
handler!(create_topics_, |s, h, b, _c| create_topics::handle(s, h, b)
    .await);
handler!(delete_topics_, |s, h, b, _c| delete_topics::handle(s, h, b)
    .await);
handler!(describe_configs_, |s, h, b, _c| configs::handle_describe(
    s, h, b
)
.await);
handler!(describe_cluster_, |s, h, b, _c| describe_cluster::handle(
    s, h, b
));
handler!(init_producer_id_, |s, h, b, _c| init_producer_id::handle(
    s, h, b
)
.await);
handler!(find_coordinator_, |s, h, b, _c| find_coordinator::handle(
    s, h, b
));
handler!(join_group_, |s, h, b, c| join_group::handle(s, h, b, c)
    .await);
handler!(sync_group_, |s, h, b, _c| sync_group::handle(s, h, b).await);
handler!(heartbeat_, |s, h, b, _c| heartbeat::handle(s, h, b).await);
handler!(leave_group_, |s, h, b, _c| leave_group::handle(s, h, b)
    .await);
handler!(offset_commit_, |s, h, b, _c| offset_commit::handle(s, h, b)
    .await);
handler!(offset_fetch_, |s, h, b, _c| offset_fetch::handle(s, h, b)
    .await);
handler!(list_groups_, |s, h, b, _c| list_groups::handle(s, h, b)
    .await);
handler!(describe_groups_, |s, h, b, _c| describe_groups::handle(
    s, h, b
)
.await);
handler!(delete_groups_, |s, h, b, _c| delete_groups::handle(s, h, b)
    .await);
handler!(alter_configs_, |s, h, b, _c| alter_configs::handle_alter(
    s, h, b
)
.await);
handler!(incremental_alter_configs_, |s, h, b, _c| {
    alter_configs::handle_incremental(s, h, b).await
});

pub const TABLE: &[Api] = &[
    Api {
        key: key::PRODUCE,
        decode: |_, b| produce::decode(b).map(drop),
        handle: None,
    },
    Api {
        key: key::FETCH,
        decode: |v, b| fetch::decode(v, b).map(drop),
        handle: Some(fetch_),
    },
    Api {
        key: key::LIST_OFFSETS,
        decode: |v, b| list_offsets::decode(v, b).map(drop),
        handle: Some(list_offsets_),
    },
    Api {
        key: key::METADATA,
        decode: |v, b| metadata::decode(v, b).map(drop),
        handle: Some(metadata_),
    },
    Api {
        key: key::API_VERSIONS,
        decode: |_, _| Ok(()),
        handle: None,
    },
    Api {
        key: key::CREATE_TOPICS,
        decode: |_, b| create_topics::decode(b).map(drop),
        handle: Some(create_topics_),
    },
    Api {
        key: key::DELETE_TOPICS,
        decode: |v, b| delete_topics::decode(v, b).map(drop),
        handle: Some(delete_topics_),
    },
    Api {
        key: key::DESCRIBE_CONFIGS,
        decode: |_, b| configs::decode_describe(b).map(drop),
        handle: Some(describe_configs_),
    },
    Api {
        key: key::DESCRIBE_CLUSTER,
        decode: |v, b| describe_cluster::decode(v, b).map(drop),
        handle: Some(describe_cluster_),
    },
    Api {
        key: key::INIT_PRODUCER_ID,
        decode: |v, b| init_producer_id::decode(v, b).map(drop),
        handle: Some(init_producer_id_),
    },
    Api {
        key: key::FIND_COORDINATOR,
        decode: |v, b| find_coordinator::decode(v, b).map(drop),
        handle: Some(find_coordinator_),
    },
    Api {
        key: key::JOIN_GROUP,
        decode: |v, b| join_group::decode(v, b, "client", "host").map(drop),
        handle: Some(join_group_),
    },
    Api {
        key: key::SYNC_GROUP,
        decode: |v, b| sync_group::decode(v, b).map(drop),
        handle: Some(sync_group_),
    },
    Api {
        key: key::HEARTBEAT,
        decode: |v, b| heartbeat::decode(v, b).map(drop),
        handle: Some(heartbeat_),
    },
    Api {
        key: key::LEAVE_GROUP,
        decode: |v, b| leave_group::decode(v, b).map(drop),
        handle: Some(leave_group_),
    },
    Api {
        key: key::OFFSET_COMMIT,
        decode: |v, b| offset_commit::decode(v, b).map(drop),
        handle: Some(offset_commit_),
    },
    Api {
        key: key::OFFSET_FETCH,
        decode: |v, b| offset_fetch::decode(v, b).map(drop),
        handle: Some(offset_fetch_),
    },
    Api {
        key: key::LIST_GROUPS,
        decode: |v, b| list_groups::decode(v, b).map(drop),
        handle: Some(list_groups_),
    },
    Api {
        key: key::DESCRIBE_GROUPS,
        decode: |_, b| describe_groups::decode(b).map(drop),
        handle: Some(describe_groups_),
    },
    Api {
        key: key::DELETE_GROUPS,
        decode: |_, b| delete_groups::decode(b).map(drop),
        handle: Some(delete_groups_),
    },
    Api {
        key: key::ALTER_CONFIGS,
        decode: |_, b| alter_configs::decode_alter(b).map(drop),
        handle: Some(alter_configs_),
    },
    Api {
        key: key::INCREMENTAL_ALTER_CONFIGS,
        decode: |_, b| alter_configs::decode_incremental(b).map(drop),
        handle: Some(incremental_alter_configs_),
    },
];

/// The entry for `key`, if this broker serves it.
pub fn find(key: i16) -> Option<&'static Api> {
    TABLE.iter().find(|api| api.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::APIS;

    #[test]
    fn every_advertised_api_has_one_entry_and_every_entry_is_advertised() {
        for spec in APIS {
            let entries = TABLE.iter().filter(|api| api.key == spec.key).count();
            assert_eq!(entries, 1, "API {} in ApiVersions", spec.key);
        }
        for api in TABLE {
            assert!(
                APIS.iter().any(|spec| spec.key == api.key),
                "API {} has a handler but is not advertised",
                api.key
            );
            let special = [key::PRODUCE, key::API_VERSIONS].contains(&api.key);
            assert_eq!(api.handle.is_none(), special, "API {}", api.key);
        }
    }
}
