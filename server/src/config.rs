//! Broker configuration: command-line flags over an optional TOML file, checked once at start.
//!
//! Read on the main thread before the shards start; shared read-only (`Arc<Config>`) after.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ringtail_engine::{FsyncPolicy, LogConfig};
use serde::Deserialize;

/// A Kafka-compatible broker, one shard per core on io_uring.
#[derive(Parser, Debug, Default)]
#[command(name = "ringtail", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with the same keys as these flags, plus topic defaults under Kafka's names.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where partitions and metadata live [default: ./ringtail-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:9092]
    #[arg(long)]
    pub listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address]
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Number of shards (threads) [default: one per online core, or one per --cores entry]
    #[arg(long)]
    pub shards: Option<usize>,
    /// Cores to pin shards to: "0,1" or "0-3"; shard i runs on the i-th core listed
    #[arg(long)]
    pub cores: Option<String>,
    /// never | acks-all | always | interval:MS [default: acks-all]
    #[arg(long)]
    pub fsync: Option<String>,
    /// error | warn | info | debug | trace [default: info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// Time each stage of produce requests (append queue, write, fsync, cross-shard hops,
    /// response) and print the breakdown when the broker stops
    #[arg(long)]
    pub stage_timing: bool,
    /// Where to serve Prometheus metrics (GET /metrics), HOST:PORT, or "off"
    /// [default: 127.0.0.1:9644]
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Move partitions from the busiest shard to the least busy every
    /// core.balance.interval.ms when the gap matters: true or false [default: true]
    #[arg(long)]
    pub balance_cores: Option<bool>,
    /// With --cores: restrict each shard's io_uring worker threads (io-wq: punted writes and
    /// splices) to the shard's core: true or false (the kernel's default placement)
    /// [default: true]
    #[arg(long)]
    pub pin_io_workers: Option<bool>,
    /// This node's id in a cluster (Kafka's node.id) [default: 1, alone]
    #[arg(long)]
    pub node_id: Option<u64>,
    /// The controller voters, ID@HOST:PORT,... (Kafka's controller.quorum.voters): each is a
    /// controller voter and a broker [default: none, a one-node cluster]
    #[arg(long)]
    pub controller_quorum_voters: Option<String>,
    /// Address this node's controller listens on for the quorum [default: its entry in
    /// --controller-quorum-voters]
    #[arg(long)]
    pub controller_listen: Option<String>,
}

/// What else the binary does besides running the broker.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Check the Linux settings that matter for the broker (and change them with --apply)
    Tune(crate::tune::TuneArgs),
    /// Operate a running broker: per-core load, moving partitions between cores
    Admin(crate::admin::AdminArgs),
}

/// The TOML file: the flags' keys, and topic defaults under Kafka's names.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(rename = "data-dir")]
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    #[serde(rename = "advertised-listener")]
    advertised_listener: Option<String>,
    shards: Option<usize>,
    cores: Option<String>,
    fsync: Option<String>,
    #[serde(rename = "log-level")]
    log_level: Option<String>,
    #[serde(rename = "stage-timing")]
    stage_timing: Option<bool>,
    #[serde(rename = "metrics-listen")]
    metrics_listen: Option<String>,
    #[serde(rename = "balance-cores")]
    balance_cores: Option<bool>,
    #[serde(rename = "pin-io-workers")]
    pin_io_workers: Option<bool>,
    #[serde(rename = "core.balance.interval.ms")]
    core_balance_interval_ms: Option<i64>,
    #[serde(rename = "log.retention.check.interval.ms")]
    log_retention_check_interval_ms: Option<i64>,
    #[serde(rename = "num.partitions")]
    num_partitions: Option<i32>,
    #[serde(rename = "auto.create.topics.enable")]
    auto_create_topics_enable: Option<bool>,
    #[serde(rename = "retention.ms")]
    retention_ms: Option<i64>,
    #[serde(rename = "retention.bytes")]
    retention_bytes: Option<i64>,
    #[serde(rename = "segment.bytes")]
    segment_bytes: Option<u64>,
    #[serde(rename = "segment.ms")]
    segment_ms: Option<i64>,
    #[serde(rename = "max.message.bytes")]
    max_message_bytes: Option<usize>,
    #[serde(rename = "socket.request.max.bytes")]
    socket_request_max_bytes: Option<usize>,
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    group_initial_rebalance_delay_ms: Option<u64>,
    #[serde(rename = "offsets.retention.minutes")]
    offsets_retention_minutes: Option<i64>,
    #[serde(rename = "connections.max.idle.ms")]
    connections_max_idle_ms: Option<i64>,
    #[serde(rename = "max.connections")]
    max_connections: Option<i64>,
    #[serde(rename = "max.connections.per.ip")]
    max_connections_per_ip: Option<i64>,
    #[serde(rename = "queued.max.request.bytes")]
    queued_max_request_bytes: Option<i64>,
    #[serde(rename = "offline-partition-retry-ms")]
    offline_partition_retry_ms: Option<i64>,
    #[serde(rename = "descriptor-reserve")]
    descriptor_reserve: Option<i64>,
    #[serde(rename = "node.id")]
    node_id: Option<u64>,
    #[serde(rename = "controller.quorum.voters")]
    controller_quorum_voters: Option<String>,
    #[serde(rename = "controller-listen")]
    controller_listen: Option<String>,
    #[serde(rename = "broker.session.timeout.ms")]
    broker_session_timeout_ms: Option<i64>,
    #[serde(rename = "broker.heartbeat.interval.ms")]
    broker_heartbeat_interval_ms: Option<i64>,
}

/// Cluster settings (docs/cluster.md); absent when the node runs alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// Voter ids and their controller addresses (HOST:PORT).
    pub voters: std::collections::BTreeMap<u64, String>,
    /// Where this node takes quorum traffic: a voter's RPCs, or a learner's replication.
    pub controller_listen: Option<SocketAddr>,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
}

/// Parses Kafka's `controller.quorum.voters`: `1@host:port,2@host:port`.
pub fn parse_voters(text: &str) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
    let bad = |why: &str| {
        ConfigError(format!(
            "invalid --controller-quorum-voters {text:?}: {why} (expected ID@HOST:PORT,...)"
        ))
    };
    let mut voters = std::collections::BTreeMap::new();
    for entry in text.split(',').map(str::trim) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| bad("an entry has no @"))?;
        let id: u64 = id.parse().map_err(|_| bad("a node id is not a number"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("an address has no port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad("a bad host or port"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(bad("a node id is listed twice"));
        }
    }
    Ok(voters)
}

/// Defaults for topics, under Kafka's names.
#[derive(Clone, Debug)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub auto_create_topics_enable: bool,
    pub log: LogConfig,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub shards: usize,
    /// Core of each shard, when pinned.
    pub cores: Option<Vec<usize>>,
    pub fsync: FsyncPolicy,
    pub log_level: String,
    /// `--stage-timing`: record the produce path's stage breakdown.
    pub stage_timing: bool,
    /// `--metrics-listen`: the Prometheus endpoint's address; None when "off".
    pub metrics_listen: Option<SocketAddr>,
    /// `--balance-cores`: move partitions between shards by measured load (`balance`).
    pub balance_cores: bool,
    /// `--pin-io-workers`: with `cores`, each shard's io-wq workers share its core.
    pub pin_io_workers: bool,
    /// `core.balance.interval.ms`: how often the balancer measures and may move one partition.
    pub core_balance_interval_ms: u64,
    /// `log.retention.check.interval.ms`: how often each shard deletes segments past their
    /// topic's retention (Kafka's default is 300000; 30000 here, as before the setting existed).
    pub log_retention_check_interval_ms: u64,
    pub topics: TopicDefaults,
    pub socket_request_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// `offsets.retention.minutes`: empty groups and their offsets expire after this.
    pub offsets_retention_minutes: i64,
    /// `connections.max.idle.ms`: a connection with nothing in flight is closed after this.
    pub connections_max_idle_ms: u64,
    /// `max.connections` (broker-wide) and `max.connections.per.ip`.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// `queued.max.request.bytes`: request bytes being read or awaiting an answer, broker-wide.
    pub queued_max_request_bytes: usize,
    /// `offline-partition-retry-ms`: how often partitions that a storage failure took offline
    /// are reopened (recovered from disk) to see whether the fault has cleared.
    pub offline_partition_retry_ms: u64,
    /// `descriptor-reserve`: file descriptors connections may never take, kept for partitions
    /// (at most a quarter of the limit).
    pub descriptor_reserve: u64,
    /// Set when the node is part of a cluster (`--controller-quorum-voters`).
    pub cluster: Option<ClusterConfig>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// Parses "0,1", "0-3" or "0-1,4".
pub fn parse_cores(text: &str) -> Result<Vec<usize>, ConfigError> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || {
            ConfigError(format!(
                "invalid --cores {text:?}: expected a list like 0,1 or 0-3"
            ))
        };
        if let Some((from, to)) = part.split_once('-') {
            let from: usize = from.trim().parse().map_err(|_| bad())?;
            let to: usize = to.trim().parse().map_err(|_| bad())?;
            if from > to {
                return Err(bad());
            }
            cores.extend(from..=to);
        } else {
            cores.push(part.parse().map_err(|_| bad())?);
        }
    }
    let mut seen = cores.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != cores.len() {
        return err(format!("invalid --cores {text:?}: a core is listed twice"));
    }
    Ok(cores)
}

fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    pub fn load(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config {}: {e}", path.display()))
                })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError(format!("invalid config {}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let cluster = Config::cluster(&args, &file)?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./ringtail-data"));
        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "invalid --listen {listen_text:?}: expected HOST:PORT, e.g. 127.0.0.1:9092"
            ))
        })?;
        let advertised = args
            .advertised_listener
            .or(file.advertised_listener)
            .unwrap_or_else(|| listen_text.clone());
        let (host, port) = advertised.rsplit_once(':').ok_or_else(|| {
            ConfigError(format!(
                "invalid --advertised-listener {advertised:?}: expected HOST:PORT"
            ))
        })?;
        let port: u16 = port.parse().map_err(|_| {
            ConfigError(format!(
                "invalid --advertised-listener {advertised:?}: bad port"
            ))
        })?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return err(format!(
                "invalid --advertised-listener {advertised:?}: empty host"
            ));
        }
        let port = if port == 0 { listen.port() } else { port };
        let cores = match args.cores.or(file.cores) {
            Some(text) => Some(parse_cores(&text)?),
            None => None,
        };
        let shards = match (args.shards.or(file.shards), &cores) {
            (Some(0), _) => return err("--shards must be at least 1"),
            (Some(n), Some(cores)) if n != cores.len() => {
                return err(format!(
                    "--shards {n} but --cores lists {} cores: give one core per shard",
                    cores.len()
                ))
            }
            (Some(n), _) => n,
            (None, Some(cores)) => cores.len(),
            (None, None) => online_cores(),
        };
        if let Some(cores) = &cores {
            let online = online_cores();
            if let Some(bad) = cores.iter().find(|&&c| c >= online) {
                return err(format!(
                    "--cores names core {bad}, but this machine has cores 0-{}",
                    online - 1
                ));
            }
        }
        let fsync_text = args
            .fsync
            .or(file.fsync)
            .unwrap_or_else(|| "acks-all".into());
        let fsync: FsyncPolicy = fsync_text
            .parse()
            .map_err(|e: ringtail_engine::config::ParsePolicyError| ConfigError(e.to_string()))?;
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return err(format!(
                "invalid --log-level {log_level:?}: expected error, warn, info, debug or trace"
            ));
        }
        let mut log = LogConfig {
            fsync,
            ..LogConfig::default()
        };
        if let Some(ms) = file.retention_ms {
            log.retention_ms = if ms < 0 { None } else { Some(ms) };
        }
        if let Some(bytes) = file.retention_bytes {
            log.retention_bytes = if bytes < 0 { None } else { Some(bytes as u64) };
        }
        if let Some(bytes) = file.segment_bytes {
            if !(1024..=i32::MAX as u64).contains(&bytes) {
                return err("segment.bytes must be between 1024 and 2147483647");
            }
            log.segment_bytes = bytes;
        }
        if let Some(ms) = file.segment_ms {
            if ms <= 0 {
                return err("segment.ms must be positive");
            }
            log.segment_ms = ms;
        }
        if let Some(bytes) = file.max_message_bytes {
            if bytes < 64 {
                return err("max.message.bytes must be at least 64");
            }
            log.max_message_bytes = bytes;
        }
        let num_partitions = file.num_partitions.unwrap_or(1);
        if num_partitions < 1 {
            return err("num.partitions must be at least 1");
        }
        let socket_request_max_bytes = file.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024);
        if socket_request_max_bytes < 1024 {
            return err("socket.request.max.bytes must be at least 1024");
        }
        let positive = |value: Option<i64>, name: &str, default: i64| -> Result<i64, ConfigError> {
            match value {
                Some(v) if v < 1 => err(format!("{name} must be at least 1")),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let connections_max_idle_ms = positive(
            file.connections_max_idle_ms,
            "connections.max.idle.ms",
            600_000,
        )? as u64;
        let max_connections =
            positive(file.max_connections, "max.connections", i32::MAX.into())? as usize;
        let max_connections_per_ip = positive(
            file.max_connections_per_ip,
            "max.connections.per.ip",
            i32::MAX.into(),
        )? as usize;
        // Kafka's default is unlimited (-1); here 512 MiB unless set, so that half-sent requests
        // cannot pin memory without bound (-1 still means unlimited).
        let queued_max_request_bytes = match file.queued_max_request_bytes {
            Some(-1) => usize::MAX,
            Some(v) if v < 1 => return err("queued.max.request.bytes must be -1 or at least 1"),
            Some(v) => v as usize,
            None => 512 << 20,
        };
        let offline_partition_retry_ms = positive(
            file.offline_partition_retry_ms,
            "offline-partition-retry-ms",
            5000,
        )? as u64;
        let metrics_text = args
            .metrics_listen
            .or(file.metrics_listen)
            .unwrap_or_else(|| "127.0.0.1:9644".into());
        let metrics_listen = match metrics_text.as_str() {
            "off" => None,
            text => Some(text.parse().map_err(|_| {
                ConfigError(format!(
                    "invalid --metrics-listen {text:?}: expected HOST:PORT (an IP address and \
                     a port, e.g. 127.0.0.1:9644) or off"
                ))
            })?),
        };
        let core_balance_interval_ms = positive(
            file.core_balance_interval_ms,
            "core.balance.interval.ms",
            60_000,
        )? as u64;
        let log_retention_check_interval_ms = positive(
            file.log_retention_check_interval_ms,
            "log.retention.check.interval.ms",
            30_000,
        )? as u64;
        let descriptor_reserve = match file.descriptor_reserve {
            Some(v) if v < 0 => return err("descriptor-reserve must be at least 0"),
            Some(v) => v as u64,
            None => 256,
        };
        Ok(Config {
            cluster,
            descriptor_reserve,
            queued_max_request_bytes,
            offline_partition_retry_ms,
            connections_max_idle_ms,
            max_connections,
            max_connections_per_ip,
            data_dir,
            listen,
            advertised_host: host,
            advertised_port: i32::from(port),
            shards,
            cores,
            fsync,
            log_level,
            stage_timing: args.stage_timing || file.stage_timing.unwrap_or(false),
            metrics_listen,
            balance_cores: args.balance_cores.or(file.balance_cores).unwrap_or(true),
            pin_io_workers: args.pin_io_workers.or(file.pin_io_workers).unwrap_or(true),
            core_balance_interval_ms,
            log_retention_check_interval_ms,
            topics: TopicDefaults {
                num_partitions,
                auto_create_topics_enable: file.auto_create_topics_enable.unwrap_or(true),
                log,
            },
            socket_request_max_bytes,
            group_initial_rebalance_delay_ms: file.group_initial_rebalance_delay_ms.unwrap_or(3000),
            offsets_retention_minutes: match file.offsets_retention_minutes {
                Some(m) if m < 1 => return err("offsets.retention.minutes must be at least 1"),
                Some(m) => m,
                None => 7 * 24 * 60,
            },
        })
    }
}

impl Config {
    fn cluster(args: &Args, file: &FileConfig) -> Result<Option<ClusterConfig>, ConfigError> {
        let node_id = args.node_id.or(file.node_id);
        let voters_text = args
            .controller_quorum_voters
            .clone()
            .or(file.controller_quorum_voters.clone());
        let listen_text = args
            .controller_listen
            .clone()
            .or(file.controller_listen.clone());
        let Some(voters_text) = voters_text else {
            if listen_text.is_some() {
                return err("--controller-listen needs --controller-quorum-voters");
            }
            if node_id.is_some() {
                return err("--node-id needs --controller-quorum-voters (alone, a node is node 0)");
            }
            return Ok(None);
        };
        let voters = parse_voters(&voters_text)?;
        let Some(node_id) = node_id else {
            return err("--controller-quorum-voters needs --node-id");
        };
        let max = i32::MAX as u64; // Kafka's node ids are int32
        if node_id > max || voters.keys().any(|&id| id > max) {
            return err(format!("node ids must be 0 to {max}"));
        }
        let controller_listen = match (listen_text, voters.get(&node_id)) {
            (Some(text), Some(_)) => Some(text.parse().map_err(|_| {
                ConfigError(format!(
                    "invalid --controller-listen {text:?}: expected IP:PORT"
                ))
            })?),
            (None, Some(addr)) => Some(addr.parse().map_err(|_| {
                ConfigError(format!(
                    "node {node_id}'s voter address {addr:?} is not IP:PORT: give \
                     --controller-listen IP:PORT to listen on"
                ))
            })?),
            // A broker only: it follows the metadata log as a learner, replicated to here.
            (Some(text), None) => Some(text.parse().map_err(|_| {
                ConfigError(format!(
                    "invalid --controller-listen {text:?}: expected IP:PORT"
                ))
            })?),
            (None, None) => {
                return err(format!(
                    "node {node_id} is not in --controller-quorum-voters: a broker-only node \
                     needs --controller-listen IP:PORT, where the voters replicate the metadata \
                     log to it"
                ))
            }
        };
        let positive = |value: Option<i64>, name: &str, default: u64| match value {
            Some(v) if v < 1 => err(format!("{name} must be at least 1")),
            Some(v) => Ok(v as u64),
            None => Ok(default),
        };
        let session_timeout_ms = positive(
            file.broker_session_timeout_ms,
            "broker.session.timeout.ms",
            9000,
        )?;
        let heartbeat_interval_ms = positive(
            file.broker_heartbeat_interval_ms,
            "broker.heartbeat.interval.ms",
            2000,
        )?;
        if heartbeat_interval_ms >= session_timeout_ms {
            return err("broker.heartbeat.interval.ms must be below broker.session.timeout.ms");
        }
        Ok(Some(ClusterConfig {
            node_id,
            voters,
            controller_listen,
            session_timeout_ms,
            heartbeat_interval_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_flags_parse_and_bad_ones_say_why() {
        let args = |node: Option<u64>, voters: Option<&str>, listen: Option<&str>| Args {
            node_id: node,
            controller_quorum_voters: voters.map(String::from),
            controller_listen: listen.map(String::from),
            ..Args::default()
        };
        assert_eq!(Config::load(Args::default()).expect("alone").cluster, None);
        let voters = "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103";
        let c = Config::load(args(Some(2), Some(voters), None))
            .expect("a voter")
            .cluster
            .expect("cluster");
        assert_eq!(c.node_id, 2);
        assert_eq!(c.voters.len(), 3);
        assert_eq!(
            c.controller_listen,
            Some("127.0.0.1:9102".parse().expect("addr"))
        );
        assert_eq!(
            (c.session_timeout_ms, c.heartbeat_interval_ms),
            (9000, 2000)
        );
        let broker_only = Config::load(args(Some(4), Some(voters), Some("127.0.0.1:9104")))
            .expect("a broker only");
        assert_eq!(
            broker_only.cluster.expect("cluster").controller_listen,
            Some("127.0.0.1:9104".parse().expect("addr"))
        );
        let named = "1@ctl-1.example:9101";
        let e = Config::load(args(Some(1), Some(named), None)).expect_err("not an IP");
        assert!(e.0.contains("--controller-listen"), "{e}");
        let c = Config::load(args(Some(1), Some(named), Some("0.0.0.0:9101"))).expect("listen");
        assert_eq!(
            c.cluster.expect("cluster").controller_listen,
            Some("0.0.0.0:9101".parse().expect("addr"))
        );
        for (node, voters, listen) in [
            (None, Some(voters), None),
            (Some(1), Some("1@127.0.0.1"), None),
            (Some(1), Some("x@127.0.0.1:1"), None),
            (Some(1), Some("1@127.0.0.1:1,1@127.0.0.1:2"), None),
            (Some(1), Some("1@:1"), None),
            (Some(1), Some("1@127.0.0.1:1,4294967296@127.0.0.1:2"), None),
            (Some(4), Some(voters), None),
            (Some(2), None, None),
            (None, None, Some("127.0.0.1:1")),
        ] {
            assert!(
                Config::load(args(node, voters, listen)).is_err(),
                "{node:?} {voters:?} {listen:?} accepted"
            );
        }
    }

    #[test]
    fn metrics_listen_defaults_turns_off_and_refuses_names() {
        let with = |text: Option<&str>| {
            Config::load(Args {
                metrics_listen: text.map(String::from),
                ..Args::default()
            })
        };
        assert_eq!(
            with(None).expect("default").metrics_listen,
            Some("127.0.0.1:9644".parse().expect("addr"))
        );
        assert_eq!(with(Some("off")).expect("off").metrics_listen, None);
        assert_eq!(
            with(Some("0.0.0.0:9000")).expect("any").metrics_listen,
            Some("0.0.0.0:9000".parse().expect("addr"))
        );
        for bad in ["", "localhost:9644", "9644", "on"] {
            let e = with(Some(bad)).expect_err(bad);
            assert!(e.0.contains("--metrics-listen"), "{e}");
        }
    }

    #[test]
    fn core_balancing_is_on_by_default_and_can_be_turned_off() {
        let config = Config::load(Args::default()).expect("defaults");
        assert!(config.balance_cores);
        assert_eq!(config.core_balance_interval_ms, 60_000);
        let off = Config::load(Args {
            balance_cores: Some(false),
            ..Args::default()
        })
        .expect("off");
        assert!(!off.balance_cores);
    }

    #[test]
    fn cores_parse() {
        assert_eq!(parse_cores("0,1").expect("list"), vec![0, 1]);
        assert_eq!(parse_cores("0-3").expect("range"), vec![0, 1, 2, 3]);
        assert_eq!(parse_cores("2, 0-1").expect("mixed"), vec![2, 0, 1]);
        for bad in ["", "a", "3-1", "0,0", "1-", "-1"] {
            assert!(parse_cores(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn defaults_and_bad_values() {
        let config = Config::load(Args::default()).expect("defaults");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.fsync, FsyncPolicy::AcksAll);
        assert_eq!(config.topics.num_partitions, 1);
        assert!(config.topics.auto_create_topics_enable);
        for args in [
            Args {
                listen: Some("nope".into()),
                ..Args::default()
            },
            Args {
                fsync: Some("sometimes".into()),
                ..Args::default()
            },
            Args {
                shards: Some(0),
                ..Args::default()
            },
            Args {
                shards: Some(3),
                cores: Some("0".into()),
                ..Args::default()
            },
            Args {
                log_level: Some("loud".into()),
                ..Args::default()
            },
        ] {
            assert!(Config::load(args).is_err());
        }
    }
}
