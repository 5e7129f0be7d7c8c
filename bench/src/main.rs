//! `ringtail-bench`: a Kafka-protocol load generator with its own minimal client (no
//! librdkafka), for Ringtail or any Kafka-compatible broker.
#![forbid(unsafe_code)]

mod batch;
mod client;
mod run;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use run::{ConsumeSettings, Limit, ProduceSettings};
use stats::{Reporter, Totals};

#[derive(Parser)]
#[command(name = "ringtail-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce pre-built batches as fast as possible, or at --rate.
    Produce(ProduceArgs),
    /// Read every partition from the earliest offset until --messages records are seen.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate while consuming; latency from each record's send time.
    E2e(E2eArgs),
    /// Produce then consume --messages and compare with the original targets.
    Check(CheckArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Broker address HOST:PORT
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic
    #[arg(long, default_value = "ringtail-bench")]
    topic: String,
    /// Connections (one thread each)
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Write a JSON summary here
    #[arg(long)]
    json: Option<String>,
}

#[derive(Args, Clone)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    /// Partitions to create the topic with, if missing
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Messages to send
    #[arg(
        long,
        conflicts_with = "duration",
        required_unless_present = "duration"
    )]
    messages: Option<u64>,
    /// Seconds to run
    #[arg(long)]
    duration: Option<f64>,
    /// Value bytes per message
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Records per batch (one batch per produce request)
    #[arg(long, default_value_t = 1000)]
    batch_records: i32,
    /// 0, 1 or -1 (all)
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    acks: i16,
    /// Messages per second over all connections (open loop); default: as fast as possible
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight per connection
    #[arg(long, default_value_t = 5)]
    inflight: usize,
}

#[derive(Args, Clone)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Records to read
    #[arg(long)]
    messages: u64,
    /// Check every batch's CRC-32C
    #[arg(long)]
    verify: bool,
}

#[derive(Args, Clone)]
struct E2eArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Messages per second produced
    #[arg(long)]
    rate: f64,
    /// Seconds to run
    #[arg(long)]
    duration: f64,
    #[arg(long, default_value_t = 200)]
    size: usize,
    #[arg(long, default_value_t = 100)]
    batch_records: i32,
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    acks: i16,
}

#[derive(Args, Clone)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Required produce rate, messages/s
    #[arg(long, default_value_t = 250_000.0)]
    produce_target: f64,
    /// Required consume rate, messages/s
    #[arg(long, default_value_t = 550_000.0)]
    consume_target: f64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(args) => produce(&args).map(|totals| {
            finish(
                "produce",
                &args.common,
                &totals,
                &produce_settings_json(&args),
            )
        }),
        Command::Consume(args) => consume(&args).map(|totals| {
            finish(
                "consume",
                &args.common,
                &totals,
                &format!("\"verify\": {}", args.verify),
            )
        }),
        Command::E2e(args) => e2e(&args),
        Command::Check(args) => check(&args),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ringtail-bench: {e}");
            std::process::exit(2);
        }
    }
}

fn assign(partitions: usize, connections: usize, connection: usize) -> Vec<i32> {
    if connections >= partitions {
        return vec![(connection % partitions) as i32];
    }
    (0..partitions)
        .filter(|p| p % connections == connection)
        .map(|p| p as i32)
        .collect()
}

fn produce(args: &ProduceArgs) -> Result<Totals, client::ClientError> {
    let partitions =
        client::ensure_topic(&args.common.brokers, &args.common.topic, args.partitions)?;
    let limit = Limit::new(args.messages, args.duration.map(Duration::from_secs_f64));
    run_producers(args, partitions, &limit, false, "produce")
}

fn run_producers(
    args: &ProduceArgs,
    partitions: usize,
    limit: &Arc<Limit>,
    stamp: bool,
    label: &'static str,
) -> Result<Totals, client::ClientError> {
    let connections = args.common.connections.max(1);
    let reporter = Reporter::start(label);
    let started = Instant::now();
    let settings = Arc::new(ProduceSettings {
        brokers: args.common.brokers.clone(),
        topic: args.common.topic.clone(),
        value_bytes: args.size,
        batch_records: args.batch_records.max(1),
        acks: args.acks,
        rate: args.rate.map(|r| r / connections as f64),
        inflight: args.inflight.max(1),
        stamp_every_batch: stamp,
    });
    let workers: Vec<_> = (0..connections)
        .map(|c| {
            let (settings, limit, mut meter) = (settings.clone(), limit.clone(), reporter.meter());
            let response_meter = reporter.meter();
            let mine = assign(partitions, connections, c);
            std::thread::spawn(move || {
                run::produce(&settings, &mine, &limit, &mut meter, response_meter)
            })
        })
        .collect();
    join_workers(workers, limit, reporter, started)
}

fn consume(args: &ConsumeArgs) -> Result<Totals, client::ClientError> {
    let mut connection = client::Connection::connect(&args.common.brokers)?;
    let partitions = connection
        .partition_count(&args.common.topic)?
        .ok_or(client::ClientError::Malformed("the topic does not exist"))?;
    let limit = Limit::new(Some(args.messages), None);
    let settings = ConsumeSettings {
        brokers: args.common.brokers.clone(),
        topic: args.common.topic.clone(),
        verify: args.verify,
        end_to_end: false,
        fetch_max_bytes: 32 << 20,
    };
    run_consumers(
        &settings,
        args.common.connections,
        partitions,
        &limit,
        "consume",
    )
}

fn run_consumers(
    settings: &ConsumeSettings,
    connections: usize,
    partitions: usize,
    limit: &Arc<Limit>,
    label: &'static str,
) -> Result<Totals, client::ClientError> {
    let connections = connections.clamp(1, partitions);
    let reporter = Reporter::start(label);
    let started = Instant::now();
    let settings = Arc::new(ConsumeSettings {
        brokers: settings.brokers.clone(),
        topic: settings.topic.clone(),
        ..*settings
    });
    let workers: Vec<_> = (0..connections)
        .map(|c| {
            let (settings, limit, mut meter) = (settings.clone(), limit.clone(), reporter.meter());
            let mine = assign(partitions, connections, c);
            std::thread::spawn(move || run::consume(&settings, &mine, &limit, &mut meter))
        })
        .collect();
    join_workers(workers, limit, reporter, started)
}

/// Waits for every worker; the first error stops the others and is returned.
fn join_workers(
    workers: Vec<std::thread::JoinHandle<Result<(), client::ClientError>>>,
    limit: &Arc<Limit>,
    reporter: Reporter,
    started: Instant,
) -> Result<Totals, client::ClientError> {
    let mut first_error = None;
    for worker in workers {
        if let Err(e) = worker.join().expect("worker thread") {
            limit.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    let totals = reporter.finish(started);
    match first_error {
        Some(e) => Err(e),
        None => Ok(totals),
    }
}

fn e2e(args: &E2eArgs) -> Result<bool, client::ClientError> {
    let partitions =
        client::ensure_topic(&args.common.brokers, &args.common.topic, args.partitions)?;
    let produce_args = ProduceArgs {
        common: args.common.clone(),
        partitions: args.partitions,
        messages: None,
        duration: Some(args.duration),
        size: args.size,
        batch_records: args.batch_records,
        acks: args.acks,
        rate: Some(args.rate),
        inflight: 5,
    };
    let produce_limit = Limit::new(None, Some(Duration::from_secs_f64(args.duration)));
    let consume_limit = Limit::new(None, Some(Duration::from_secs_f64(args.duration + 1.0)));
    let settings = ConsumeSettings {
        brokers: args.common.brokers.clone(),
        topic: args.common.topic.clone(),
        verify: false,
        end_to_end: true,
        fetch_max_bytes: 8 << 20,
    };
    let consumer = {
        let limit = consume_limit.clone();
        let connections = args.common.connections;
        std::thread::spawn(move || {
            run_consumers(&settings, connections, partitions, &limit, "e2e-consume")
        })
    };
    let produced = run_producers(
        &produce_args,
        partitions,
        &produce_limit,
        true,
        "e2e-produce",
    )?;
    let consumed = consumer.join().expect("consumer thread")?;
    print_summary("e2e produce", &produced);
    print_summary("e2e consume (latency: send -> fetched)", &consumed);
    if let Some(path) = &args.common.json {
        let settings = format!("\"rate\": {}, \"duration\": {}, \"size\": {}, \"batch_records\": {}, \"acks\": {}, \"partitions\": {}, \"connections\": {}",
            args.rate, args.duration, args.size, args.batch_records, args.acks, partitions, args.common.connections);
        write_json(path, "e2e", &consumed, &settings).map_err(client::ClientError::Io)?;
    }
    Ok(true)
}

fn check(args: &CheckArgs) -> Result<bool, client::ClientError> {
    let produce_args = ProduceArgs {
        common: args.common.clone(),
        partitions: args.partitions,
        messages: Some(args.messages),
        duration: None,
        size: 200,
        batch_records: 1000,
        acks: 1,
        rate: None,
        inflight: 5,
    };
    let produced = produce(&produce_args)?;
    print_summary("check produce", &produced);
    let consume_args = ConsumeArgs {
        common: args.common.clone(),
        messages: args.messages,
        verify: false,
    };
    let consumed = consume(&consume_args)?;
    print_summary("check consume", &consumed);
    let produce_ok = produced.msgs_per_sec() >= args.produce_target;
    let consume_ok =
        consumed.msgs_per_sec() >= args.consume_target && consumed.messages >= args.messages;
    println!(
        "produce {:.0} msg/s (target {:.0}): {}",
        produced.msgs_per_sec(),
        args.produce_target,
        if produce_ok { "ok" } else { "too slow" }
    );
    println!(
        "consume {:.0} msg/s (target {:.0}): {}",
        consumed.msgs_per_sec(),
        args.consume_target,
        if consume_ok { "ok" } else { "too slow" }
    );
    let pass = produce_ok && consume_ok;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}

fn produce_settings_json(args: &ProduceArgs) -> String {
    format!(
        "\"size\": {}, \"batch_records\": {}, \"acks\": {}, \"connections\": {}, \"partitions\": {}, \"inflight\": {}, \"rate\": {}",
        args.size,
        args.batch_records,
        args.acks,
        args.common.connections,
        args.partitions,
        args.inflight,
        args.rate.map_or("null".to_string(), |r| r.to_string())
    )
}

fn finish(mode: &str, common: &Common, totals: &Totals, settings: &str) -> bool {
    print_summary(mode, totals);
    if let Some(path) = &common.json {
        if let Err(e) = write_json(path, mode, totals, settings) {
            eprintln!("ringtail-bench: cannot write {path}: {e}");
            return false;
        }
    }
    totals.errors == 0
}

fn print_summary(mode: &str, totals: &Totals) {
    println!("{mode}");
    println!("  messages      {:>14}", totals.messages);
    println!("  seconds       {:>14.3}", totals.seconds);
    println!("  msgs/s        {:>14.0}", totals.msgs_per_sec());
    println!("  MB/s          {:>14.1}", totals.mb_per_sec());
    println!(
        "  latency us    p50 {} p90 {} p99 {} p99.9 {} max {}",
        totals.percentile_us(0.5),
        totals.percentile_us(0.9),
        totals.percentile_us(0.99),
        totals.percentile_us(0.999),
        totals.latency_us.max()
    );
    if totals.errors > 0 {
        println!("  errors        {:>14}", totals.errors);
    }
}

fn write_json(path: &str, mode: &str, totals: &Totals, settings: &str) -> std::io::Result<()> {
    let json = format!(
        "{{\"mode\": \"{mode}\", \"messages\": {}, \"bytes\": {}, \"seconds\": {:.6}, \"msgs_per_sec\": {:.1}, \"mb_per_sec\": {:.3}, \
         \"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}, \"errors\": {}, \"settings\": {{{settings}}}}}\n",
        totals.messages,
        totals.bytes,
        totals.seconds,
        totals.msgs_per_sec(),
        totals.mb_per_sec(),
        totals.percentile_us(0.5),
        totals.percentile_us(0.9),
        totals.percentile_us(0.99),
        totals.percentile_us(0.999),
        totals.latency_us.max(),
        totals.errors
    );
    std::fs::write(path, json)
}
