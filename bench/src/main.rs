//! `ringtail-bench`: a Kafka-protocol load generator with its own minimal client (no
//! librdkafka), for Ringtail or any Kafka-compatible broker.
#![forbid(unsafe_code)]

mod batch;
mod client;
mod run;
mod stats;
mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use run::{ConsumeSettings, Limit, ProduceSettings};
use stats::{Reporter, Totals};
use std::sync::atomic::Ordering;

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
    /// Run the broker in each layout of a matrix against the same load; recommend one.
    Sweep(sweep::SweepArgs),
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
    /// Requests in flight per connection [default: 5; with --rate, enough for 200 ms of the
    /// schedule, so a broker slower than the rate shows as a run that fell behind]
    #[arg(long)]
    inflight: Option<usize>,
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
    /// Also check acks=all latency: fail if the p99 of a paced acks=all run (100-record
    /// batches, 4 partitions) exceeds this many milliseconds or the run falls behind
    #[arg(long)]
    acks_all_p99_max_ms: Option<f64>,
    /// Rate of the acks=all latency check, messages/s
    #[arg(long, default_value_t = 250_000.0)]
    acks_all_rate: f64,
    /// Seconds of the acks=all latency check
    #[arg(long, default_value_t = 10.0)]
    acks_all_seconds: f64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(args) => produce(&args).map(|(totals, schedule)| {
            let kept = schedule.as_ref().is_none_or(Schedule::kept);
            let settings = match &schedule {
                Some(schedule) => format!("{}{}", schedule.json(), produce_settings_json(&args)),
                None => produce_settings_json(&args),
            };
            print_summary("produce", &totals);
            if let Some(schedule) = &schedule {
                schedule.print();
            }
            finish("produce", &args.common, &totals, &settings) && kept
        }),
        Command::Consume(args) => consume(&args).map(|totals| {
            print_summary("consume", &totals);
            finish(
                "consume",
                &args.common,
                &totals,
                &format!("\"verify\": {}", args.verify),
            )
        }),
        Command::E2e(args) => e2e(&args),
        Command::Check(args) => check(&args),
        Command::Sweep(args) => sweep::sweep(&args),
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

fn produce(args: &ProduceArgs) -> Result<(Totals, Option<Schedule>), client::ClientError> {
    let partitions =
        client::ensure_topic(&args.common.brokers, &args.common.topic, args.partitions)?;
    let limit = Limit::new(args.messages, args.duration.map(Duration::from_secs_f64));
    let totals = run_producers(args, partitions, &limit, false, "produce")?;
    let schedule = Schedule::of(args.rate, &totals, &limit);
    Ok((totals, schedule))
}

fn run_producers(
    args: &ProduceArgs,
    partitions: usize,
    limit: &Arc<Limit>,
    stamp: bool,
    label: &'static str,
) -> Result<Totals, client::ClientError> {
    let connections = args.common.connections.max(1);
    let batch_records = args.batch_records.max(1);
    let rate = args.rate.map(|r| r / connections as f64);
    let inflight = inflight_for(args.inflight, rate, batch_records)?;
    let reporter = Reporter::start(label);
    let started = Instant::now();
    let settings = Arc::new(ProduceSettings {
        brokers: args.common.brokers.clone(),
        topic: args.common.topic.clone(),
        value_bytes: args.size,
        batch_records,
        acks: args.acks,
        rate,
        inflight,
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

/// Requests one connection may have in flight. A paced connection gets enough for 200 ms of its
/// schedule, so it keeps the schedule against any broker that answers within that; a schedule
/// one sender thread cannot keep is refused up front.
fn inflight_for(
    asked: Option<usize>,
    rate_per_connection: Option<f64>,
    batch_records: i32,
) -> Result<usize, client::ClientError> {
    let Some(rate) = rate_per_connection else {
        return Ok(asked.unwrap_or(5).max(1));
    };
    let requests_per_sec = rate / f64::from(batch_records);
    if !(rate > 0.0) || requests_per_sec > MAX_REQUESTS_PER_SEC_PER_CONNECTION {
        return Err(client::ClientError::Usage(format!(
            "--rate asks {requests_per_sec:.0} requests/s per connection; one connection paces at \
             most {MAX_REQUESTS_PER_SEC_PER_CONNECTION:.0}: use more --connections or a larger \
             --batch-records"
        )));
    }
    Ok(asked
        .unwrap_or_else(|| (requests_per_sec * 0.2).ceil().clamp(5.0, 4096.0) as usize)
        .max(1))
}

/// What one paced sender thread can keep to schedule (a request every 10 us).
const MAX_REQUESTS_PER_SEC_PER_CONNECTION: f64 = 100_000.0;

/// Whether a paced run kept its schedule, from its totals and the senders' lag.
struct Schedule {
    asked_msgs_per_sec: f64,
    achieved_msgs_per_sec: f64,
    lag_end_ms: f64,
    lag_max_ms: f64,
}

impl Schedule {
    fn of(rate: Option<f64>, totals: &Totals, limit: &Limit) -> Option<Schedule> {
        let asked = rate?;
        Some(Schedule {
            asked_msgs_per_sec: asked,
            achieved_msgs_per_sec: totals.msgs_per_sec(),
            lag_end_ms: limit.lag_end_us.load(Ordering::Relaxed) as f64 / 1e3,
            lag_max_ms: limit.lag_max_us.load(Ordering::Relaxed) as f64 / 1e3,
        })
    }

    /// Kept: the last requests went out within 100 ms of their time and at least 95% of the
    /// asked rate was reached. Otherwise the latencies are those of a growing queue.
    fn kept(&self) -> bool {
        self.lag_end_ms <= 100.0 && self.achieved_msgs_per_sec >= 0.95 * self.asked_msgs_per_sec
    }

    fn print(&self) {
        println!(
            "  schedule      asked {:.0} msg/s, achieved {:.0}, send lag at end {:.1} ms (max {:.1}): {}",
            self.asked_msgs_per_sec,
            self.achieved_msgs_per_sec,
            self.lag_end_ms,
            self.lag_max_ms,
            if self.kept() {
                "kept"
            } else {
                "FELL BEHIND (latencies include the generator's own backlog)"
            }
        );
    }

    fn json(&self) -> String {
        format!(
            "\"schedule\": {{\"asked_msgs_per_sec\": {:.1}, \"achieved_msgs_per_sec\": {:.1}, \"lag_end_ms\": {:.3}, \"lag_max_ms\": {:.3}, \"kept\": {}}}, ",
            self.asked_msgs_per_sec,
            self.achieved_msgs_per_sec,
            self.lag_end_ms,
            self.lag_max_ms,
            self.kept()
        )
    }
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
        inflight: None,
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
        inflight: None,
    };
    let (produced, _) = produce(&produce_args)?;
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
    let latency_ok = match args.acks_all_p99_max_ms {
        Some(max_ms) => check_acks_all_latency(args, max_ms)?,
        None => true,
    };
    let pass = produce_ok && consume_ok && latency_ok;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}

/// acks=all produce at a fixed rate (100-record batches, 4 partitions, one connection): the
/// schedule must hold and the p99 must stay within `max_ms`.
fn check_acks_all_latency(args: &CheckArgs, max_ms: f64) -> Result<bool, client::ClientError> {
    let mut common = args.common.clone();
    common.topic = format!("{}-acks-all", args.common.topic);
    common.json = None;
    let paced = ProduceArgs {
        common,
        partitions: 4,
        messages: None,
        duration: Some(args.acks_all_seconds),
        size: 200,
        batch_records: 100,
        acks: -1,
        rate: Some(args.acks_all_rate),
        inflight: None,
    };
    let (totals, schedule) = produce(&paced)?;
    print_summary("check acks=all latency", &totals);
    let schedule = schedule.expect("a paced run has a schedule");
    schedule.print();
    let p99_ms = totals.percentile_us(0.99) as f64 / 1e3;
    let ok = schedule.kept() && totals.errors == 0 && p99_ms <= max_ms;
    println!(
        "acks=all p99 at {:.0} msg/s {p99_ms:.2} ms (limit {max_ms} ms): {}",
        args.acks_all_rate,
        if ok {
            "ok"
        } else if !schedule.kept() {
            "fell behind"
        } else {
            "too slow"
        }
    );
    Ok(ok)
}

fn produce_settings_json(args: &ProduceArgs) -> String {
    format!(
        "\"size\": {}, \"batch_records\": {}, \"acks\": {}, \"connections\": {}, \"partitions\": {}, \"inflight\": {}, \"rate\": {}",
        args.size,
        args.batch_records,
        args.acks,
        args.common.connections,
        args.partitions,
        args.inflight.map_or("null".to_string(), |n| n.to_string()),
        args.rate.map_or("null".to_string(), |r| r.to_string())
    )
}

/// Writes the JSON summary if asked; true when the run had no errors.
fn finish(mode: &str, common: &Common, totals: &Totals, settings: &str) -> bool {
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
    if totals.retries > 0 {
        println!(
            "  retried       {:>14}  (refused with a retriable error, sent again)",
            totals.retries
        );
    }
}

fn write_json(path: &str, mode: &str, totals: &Totals, settings: &str) -> std::io::Result<()> {
    let json = format!(
        "{{\"mode\": \"{mode}\", \"messages\": {}, \"bytes\": {}, \"seconds\": {:.6}, \"msgs_per_sec\": {:.1}, \"mb_per_sec\": {:.3}, \
         \"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}, \"errors\": {}, \"retries\": {}, \"settings\": {{{settings}}}}}\n",
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
        totals.errors,
        totals.retries
    );
    std::fs::write(path, json)
}
