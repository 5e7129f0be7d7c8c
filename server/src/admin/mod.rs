//! `ringtail admin`: the operator's CLI, run in its own process. Kafka things (topics, groups,
//! the cluster) go over the Kafka protocol to `--bootstrap-server` (`kafka`); Ringtail things
//! (per-core load, moving a partition between cores) go to the broker's admin HTTP API at
//! `--admin-url` (`http`). Human tables by default, `--json` for scripts; an error prints one
//! clear line and exits 1.

/// `println!` for the admin's output: a reader that closed the pipe (`| head`) ends the
/// command quietly instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::admin::emit(format_args!($($arg)*))
    };
}

mod cluster;
mod groups;
mod http;
mod kafka;
mod topics;

use clap::{Args, Subcommand};

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// A broker to bootstrap from, HOST:PORT (Kafka's tools use the same name)
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// The broker's admin API (its --metrics-listen)
    #[arg(long, default_value = "http://127.0.0.1:9644", global = true)]
    pub admin_url: String,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Topics: create, list, describe, delete, alter-config
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Consumer groups: list, describe, lag, delete
    #[command(subcommand)]
    Group(GroupCommand),
    /// The cluster
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Per-shard load: busy seconds, connections, partitions, and each partition's traffic
    Shards,
    /// Partition commands
    #[command(subcommand)]
    Partition(PartitionCommand),
}

#[derive(Subcommand, Debug, Clone)]
pub enum TopicCommand {
    /// Create a topic
    Create {
        name: String,
        /// Partitions [default: the broker's num.partitions]
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas of each partition [default: the broker's]
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, KEY=VALUE (repeatable), e.g. retention.ms=86400000
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List the topics with their partition counts
    List,
    /// Partitions (leader, replicas, in-sync, offsets) and config overrides of topics [default:
    /// every topic]
    Describe { names: Vec<String> },
    /// Delete topics
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change a topic's config overrides (IncrementalAlterConfigs), applied without a restart
    AlterConfig {
        name: String,
        /// Set KEY=VALUE (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove an override, back to the broker's default (repeatable)
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum GroupCommand {
    /// List the consumer groups of every broker
    List,
    /// A group's state, protocol and members with their assigned partitions
    Describe { group: String },
    /// A group's committed offset, log end and lag per partition
    Lag { group: String },
    /// Delete empty groups and their committed offsets
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// The cluster id, the controller, and each broker with the partitions it leads
    Status,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PartitionCommand {
    /// Move TOPIC/PARTITION to another shard (core) while it keeps serving
    Move {
        /// TOPIC/PARTITION, e.g. orders/3
        target: String,
        #[arg(long)]
        to_shard: usize,
    },
}

/// Why an admin command failed: printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "cannot reach {addr}: {source} (is a broker listening there? --bootstrap-server names it)"
    )]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} answered {api} with something this tool cannot read: {reason}")]
    Decode {
        addr: String,
        api: &'static str,
        reason: String,
    },
    #[error("{addr} does not serve {api} in a version this tool speaks")]
    Unsupported { addr: String, api: &'static str },
    #[error("{what}: {name}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        what: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// The admin HTTP API's answer, or why it could not be reached.
    #[error("{0}")]
    AdminApi(String),
    #[error("{0}")]
    Usage(String),
}

/// Prints rows under headers, each column as wide as its widest cell; numbers right-aligned.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i)
                        .is_some_and(|c| c == "-" || c.parse::<f64>().is_ok())
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        say!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) fn emit(line: std::fmt::Arguments) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{line}").is_err() {
        std::process::exit(0); // the reader is gone: nothing left to say
    }
}

pub(crate) fn print_json(value: &serde_json::Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// KEY=VALUE, for --config and --set.
pub(crate) fn key_value(text: &str, flag: &str) -> Result<(String, String), AdminError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(AdminError::Usage(format!(
            "{flag} {text:?}: expected KEY=VALUE, e.g. retention.ms=86400000"
        ))),
    }
}

fn dispatch(args: &AdminArgs) -> Result<(), AdminError> {
    match &args.command {
        AdminCommand::Topic(command) => topics::run(args, command),
        AdminCommand::Group(command) => groups::run(args, command),
        AdminCommand::Cluster(ClusterCommand::Status) => cluster::status(args),
        AdminCommand::Shards => http::shards(args),
        AdminCommand::Partition(PartitionCommand::Move { target, to_shard }) => {
            http::partition_move(args, target, *to_shard)
        }
    }
}

/// `ringtail admin ...`: the exit status.
pub fn run(args: &AdminArgs) -> i32 {
    match dispatch(args) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("ringtail admin: {error}");
            1
        }
    }
}
