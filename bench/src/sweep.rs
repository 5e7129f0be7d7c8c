//! `ringtail-bench sweep`: runs a broker in each layout of a matrix (shards, pinning and which
//! cores, io-wq pinning, partitions per shard, fsync policy) against the same load, several runs each, interleaved; prints a
//! table of throughput and p99 with their spread, writes JSON and an SVG plot, and recommends
//! the layout that beat the default (the broker without flags) by the most in the same run.
//!
//! Each run starts the broker on a fresh data directory and a free port (`--metrics-listen
//! off`, so runs never collide on the metrics port), produces for `--duration` seconds with the
//! same settings as `ringtail-bench produce`, and stops the broker with SIGTERM.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::{client, Common, ProduceArgs};

#[derive(Args, Clone)]
pub struct SweepArgs {
    /// The broker binary [default: `ringtail` next to this program]
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// Shard counts to try [default: 1 up to the online cores]
    #[arg(long, value_delimiter = ',')]
    pub shards: Vec<usize>,
    /// Pinning to try: `no`, `yes` (each shard on a core of its own), or both
    #[arg(long, value_delimiter = ',', default_value = "no,yes")]
    pub pinned: Vec<String>,
    /// Which cores a pinned layout uses, e.g. `--core-set 1 --core-set 0,1 --core-set 1,0`
    /// (repeatable; shard i on the i-th core listed). A pinned layout of N shards tries every
    /// set of N cores given [default: cores 0 to N-1]
    #[arg(long = "core-set", value_name = "CORES")]
    pub core_sets: Vec<String>,
    /// io-wq worker placement to try for pinned layouts: `pinned` (on the shard's core) or
    /// `unpinned` (the kernel's default, --pin-io-workers false), or both
    #[arg(long, value_delimiter = ',', default_value = "pinned")]
    pub io_workers: Vec<String>,
    /// Partitions per shard to try
    #[arg(long, value_delimiter = ',', default_value = "2")]
    pub partitions_per_shard: Vec<usize>,
    /// fsync policies to try (the broker's --fsync)
    #[arg(long, value_delimiter = ',', default_value = "never")]
    pub fsync: Vec<String>,
    /// Runs of each layout (interleaved: every layout once, then again)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds of load per run
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Connections of the load
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Records per batch
    #[arg(long, default_value_t = 1000)]
    pub batch_records: i32,
    /// Value bytes per record
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// 0, 1 or -1
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub acks: i16,
    /// Results as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The plot (SVG)
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
struct Layout {
    shards: usize,
    /// Shard i on `cores[i]`; None: unpinned.
    cores: Option<Vec<usize>>,
    /// With `cores`: io-wq workers restricted to the shard's core (--pin-io-workers).
    pin_io_workers: bool,
    partitions_per_shard: usize,
    fsync: String,
    /// The broker as started without layout flags (one shard per core, unpinned).
    default: bool,
}

impl Layout {
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if !self.default {
            flags.push(format!("--shards {}", self.shards));
            if let Some(cores) = &self.cores {
                flags.push(format!("--cores {}", core_list(cores)));
                if !self.pin_io_workers {
                    flags.push("--pin-io-workers false".into());
                }
            }
        }
        flags.push(format!("--fsync {}", self.fsync));
        flags
    }

    fn name(&self) -> String {
        let pinning = match &self.cores {
            None => String::new(),
            Some(cores) => format!(
                " on cores {}{}",
                core_list(cores),
                if self.pin_io_workers {
                    ""
                } else {
                    ", io-wq unpinned"
                }
            ),
        };
        format!(
            "{} shard{}{pinning}, {} part/shard, fsync {}{}",
            self.shards,
            if self.shards == 1 { "" } else { "s" },
            self.partitions_per_shard,
            self.fsync,
            if self.default { " (default)" } else { "" }
        )
    }
}

fn core_list(cores: &[usize]) -> String {
    let cores: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    cores.join(",")
}

struct Run {
    msgs_per_sec: f64,
    p99_us: u64,
    /// The CPUs the broker's io-wq workers were allowed (Cpus_allowed_list), as seen at the
    /// end of the run: what the layout's io-wq setting gave on this kernel.
    io_worker_cpus: Vec<String>,
}

struct Outcome {
    layout: Layout,
    runs: Vec<Run>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Outcome {
    fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.msgs_per_sec).collect()
    }
    fn p99s(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.p99_us as f64).collect()
    }
    fn range(values: &[f64]) -> (f64, f64) {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

fn matrix(args: &SweepArgs, online: usize) -> Result<Vec<Layout>, client::ClientError> {
    let usage = |m: String| Err(client::ClientError::Usage(m));
    let shards = if args.shards.is_empty() {
        (1..=online).collect()
    } else {
        args.shards.clone()
    };
    if let Some(bad) = shards.iter().find(|&&s| s == 0 || s > online) {
        return usage(format!(
            "--shards {bad}: this machine has {online} cores (1-{online})"
        ));
    }
    let mut pinned = Vec::new();
    for p in &args.pinned {
        match p.as_str() {
            "no" => pinned.push(false),
            "yes" => pinned.push(true),
            other => return usage(format!("--pinned {other:?}: expected no, yes or no,yes")),
        }
    }
    let mut io_workers = Vec::new();
    for w in &args.io_workers {
        match w.as_str() {
            "pinned" => io_workers.push(true),
            "unpinned" => io_workers.push(false),
            other => {
                return usage(format!(
                    "--io-workers {other:?}: expected pinned, unpinned or pinned,unpinned"
                ))
            }
        }
    }
    let mut core_sets: Vec<Vec<usize>> = Vec::new();
    for text in &args.core_sets {
        let set: Option<Vec<usize>> = text.split(',').map(|c| c.trim().parse().ok()).collect();
        match set {
            Some(set) if !set.is_empty() && set.iter().all(|&c| c < online) => {
                let mut unique = set.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != set.len() {
                    return usage(format!("--core-set {text}: a core listed twice"));
                }
                core_sets.push(set);
            }
            _ => {
                return usage(format!(
                    "--core-set {text:?}: expected cores 0-{} separated by commas",
                    online - 1
                ))
            }
        }
    }
    if args.partitions_per_shard.contains(&0) {
        return usage("--partitions-per-shard must be at least 1".into());
    }
    if args.runs == 0 || args.duration.is_nan() || args.duration <= 0.0 {
        return usage("--runs and --duration must be positive".into());
    }
    let fsync = args
        .fsync
        .first()
        .cloned()
        .unwrap_or_else(|| "never".into());
    let per_shard = args.partitions_per_shard.first().copied().unwrap_or(2);
    let mut layouts = vec![Layout {
        shards: online,
        cores: None,
        pin_io_workers: true,
        partitions_per_shard: per_shard,
        fsync: fsync.clone(),
        default: true,
    }];
    // Each pinned shard count's core sets: the ones given for it, else 0..n.
    let sets_for = |n: usize| -> Vec<Vec<usize>> {
        let given: Vec<Vec<usize>> = core_sets.iter().filter(|s| s.len() == n).cloned().collect();
        if given.is_empty() {
            vec![(0..n).collect()]
        } else {
            given
        }
    };
    for policy in &args.fsync {
        for &per in &args.partitions_per_shard {
            for &n in &shards {
                for &pin in &pinned {
                    let placements: Vec<(Option<Vec<usize>>, bool)> = if pin {
                        sets_for(n)
                            .into_iter()
                            .flat_map(|set| io_workers.iter().map(move |&w| (Some(set.clone()), w)))
                            .collect()
                    } else {
                        vec![(None, true)]
                    };
                    for (cores, pin_io_workers) in placements {
                        let same_as_default =
                            n == online && cores.is_none() && per == per_shard && *policy == fsync;
                        if !same_as_default {
                            layouts.push(Layout {
                                shards: n,
                                cores,
                                pin_io_workers,
                                partitions_per_shard: per,
                                fsync: policy.clone(),
                                default: false,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(layouts)
}

/// The Cpus_allowed_list of each io-wq worker thread of `pid` (threads named iou-wrk-*).
fn io_worker_cpus(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let is_worker = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.starts_with("iou-wrk-"));
        if !is_worker {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(path.join("status")) {
            if let Some(line) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
                let cpus = line
                    .trim_start_matches("Cpus_allowed_list:")
                    .trim()
                    .to_string();
                if !found.contains(&cpus) {
                    found.push(cpus);
                }
            }
        }
    }
    found.sort();
    found
}

fn file_error(path: &std::path::Path, e: std::io::Error) -> client::ClientError {
    client::ClientError::Usage(format!("cannot write {}: {e}", path.display()))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Broker {
    child: Child,
    data: PathBuf,
}

impl Broker {
    fn start(
        bin: &Path,
        layout: &Layout,
        port: u16,
        data: PathBuf,
    ) -> Result<Broker, client::ClientError> {
        let _ = std::fs::remove_dir_all(&data);
        let mut command = Command::new(bin);
        command.arg("--data-dir").arg(&data).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
            "--metrics-listen",
            "off",
        ]);
        for flag in layout.flags() {
            command.args(flag.split_whitespace());
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                client::ClientError::Usage(format!("cannot start {}: {e}", bin.display()))
            })?;
        let mut broker = Broker { child, data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(client::ClientError::Usage(format!(
                    "{} exited with {status} for layout {}",
                    bin.display(),
                    layout.name()
                )));
            }
            if Instant::now() > deadline {
                broker.stop();
                return Err(client::ClientError::Usage(
                    "the broker did not start listening in 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn one_run(
    args: &SweepArgs,
    bin: &Path,
    layout: &Layout,
    scratch: &Path,
) -> Result<Run, client::ClientError> {
    let port = free_port().map_err(client::ClientError::Io)?;
    // Start from the same state: earlier runs' dirty pages written back.
    let _ = Command::new("sync").status();
    let mut broker = Broker::start(bin, layout, port, scratch.join("data"))?;
    let produce = ProduceArgs {
        common: Common {
            brokers: format!("127.0.0.1:{port}"),
            topic: "sweep".into(),
            connections: args.connections,
            json: None,
        },
        partitions: (layout.shards * layout.partitions_per_shard) as i32,
        messages: None,
        duration: Some(args.duration),
        size: args.size,
        batch_records: args.batch_records,
        acks: args.acks,
        rate: None,
        inflight: None,
    };
    let result = crate::produce(&produce);
    let io_worker_cpus = io_worker_cpus(broker.child.id()); // idle workers linger for seconds
    broker.stop();
    let (totals, _) = result?;
    if totals.errors > 0 {
        return Err(client::ClientError::Usage(format!(
            "{} errors in layout {}",
            totals.errors,
            layout.name()
        )));
    }
    Ok(Run {
        msgs_per_sec: totals.msgs_per_sec(),
        p99_us: totals.percentile_us(0.99),
        io_worker_cpus,
    })
}

fn progress(done: usize, total: usize, what: &str) {
    let width = 30;
    let filled = done * width / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} {what:<60}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    if done == total {
        eprintln!();
    }
}

pub fn sweep(args: &SweepArgs) -> Result<bool, client::ClientError> {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let layouts = matrix(args, online)?;
    let bin = match &args.broker_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(client::ClientError::Io)?
            .with_file_name("ringtail"),
    };
    if !bin.exists() {
        return Err(client::ClientError::Usage(format!(
            "no broker at {} (give --broker-bin)",
            bin.display()
        )));
    }
    let scratch = std::env::temp_dir().join(format!("ringtail-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| file_error(&scratch, e))?;
    crate::stats::set_quiet(true);
    let mut outcomes: Vec<Outcome> = layouts
        .iter()
        .map(|l| Outcome {
            layout: l.clone(),
            runs: Vec::new(),
        })
        .collect();
    let total = layouts.len() * args.runs;
    let mut done = 0;
    for _round in 0..args.runs {
        for outcome in outcomes.iter_mut() {
            progress(done, total, &outcome.layout.name());
            let run = one_run(args, &bin, &outcome.layout, &scratch);
            done += 1;
            match run {
                Ok(run) => outcome.runs.push(run),
                Err(e) => {
                    crate::stats::set_quiet(false);
                    let _ = std::fs::remove_dir_all(&scratch);
                    eprintln!();
                    return Err(e);
                }
            }
        }
    }
    progress(done, total, "done");
    crate::stats::set_quiet(false);
    let _ = std::fs::remove_dir_all(&scratch);
    let report = Report::new(args, &bin, online, outcomes);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()).map_err(|e| file_error(path, e))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg()).map_err(|e| file_error(path, e))?;
    }
    Ok(true)
}

struct Report {
    command: String,
    online: usize,
    broker: String,
    outcomes: Vec<Outcome>,
    best: usize,
}

impl Report {
    fn new(args: &SweepArgs, bin: &Path, online: usize, outcomes: Vec<Outcome>) -> Report {
        let best = (0..outcomes.len())
            .max_by(|&a, &b| median(outcomes[a].rates()).total_cmp(&median(outcomes[b].rates())))
            .unwrap_or(0);
        let command = format!(
            "ringtail-bench produce --partitions SHARDSxPER --connections {} --duration {} --batch-records {} --size {} --acks {} (runs {}, interleaved)",
            args.connections, args.duration, args.batch_records, args.size, args.acks, args.runs
        );
        Report {
            command,
            online,
            broker: bin.display().to_string(),
            outcomes,
            best,
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "load: {}", self.command);
        let _ = writeln!(
            out,
            "broker: {}  ({} online cores)\n",
            self.broker, self.online
        );
        let _ = writeln!(
            out,
            "{:<62} {:>22} {:>26} {:>8}  flags",
            "layout", "msgs/s median (range)", "p99 us median (range)", "io-wq on"
        );
        for o in &self.outcomes {
            let rates = o.rates();
            let (lo, hi) = Outcome::range(&rates);
            let p99s = o.p99s();
            let (plo, phi) = Outcome::range(&p99s);
            // The io-wq workers' CPUs as the kernel set them, over every run of the layout.
            let mut cpus: Vec<&str> = o
                .runs
                .iter()
                .flat_map(|r| r.io_worker_cpus.iter().map(String::as_str))
                .collect();
            cpus.sort_unstable();
            cpus.dedup();
            let cpus = if cpus.is_empty() {
                "-".to_string()
            } else {
                cpus.join(" ")
            };
            let _ = writeln!(
                out,
                "{:<62} {:>10.0} ({:.2}-{:.2}M) {:>10.0} ({:.0}-{:.0}) {:>8}  {}",
                o.layout.name(),
                median(rates),
                lo / 1e6,
                hi / 1e6,
                median(p99s),
                plo,
                phi,
                cpus,
                o.layout.flags().join(" ")
            );
        }
        let _ = writeln!(out, "\n{}", self.recommendation());
        out
    }

    fn recommendation(&self) -> String {
        let best = &self.outcomes[self.best];
        let default = &self.outcomes[0];
        if self.best == 0 {
            return format!(
                "recommendation: the default ({}) was the fastest layout in this run.",
                default.layout.flags().join(" ")
            );
        }
        let gain = median(best.rates()) / median(default.rates()).max(1e-9) - 1.0;
        let (best_lo, _) = Outcome::range(&best.rates());
        let (_, default_hi) = Outcome::range(&default.rates());
        let noise = if best_lo <= default_hi {
            " (the ranges overlap: within this machine's noise, more runs would tell)"
        } else {
            " (every run of it beat every run of the default)"
        };
        format!(
            "recommendation: ringtail {} — {:+.1}% median throughput over the default in the same run{}.",
            best.layout.flags().join(" "),
            gain * 100.0,
            noise
        )
    }

    fn json(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let layouts: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| {
                let runs: Vec<String> = o
                    .runs
                    .iter()
                    .map(|r| {
                        let cpus: Vec<String> = r.io_worker_cpus.iter().map(|c| quote(c)).collect();
                        format!(
                            "{{\"msgs_per_sec\": {:.0}, \"p99_us\": {}, \"io_worker_cpus\": [{}]}}",
                            r.msgs_per_sec,
                            r.p99_us,
                            cpus.join(", ")
                        )
                    })
                    .collect();
                format!(
                    "{{\"layout\": {}, \"flags\": {}, \"shards\": {}, \"cores\": {}, \"pin_io_workers\": {}, \"partitions_per_shard\": {}, \"fsync\": {}, \"default\": {}, \"median_msgs_per_sec\": {:.0}, \"median_p99_us\": {:.0}, \"runs\": [{}]}}",
                    quote(&o.layout.name()),
                    quote(&o.layout.flags().join(" ")),
                    o.layout.shards,
                    o.layout
                        .cores
                        .as_ref()
                        .map_or("null".to_string(), |c| format!("[{}]", core_list(c))),
                    o.layout.pin_io_workers,
                    o.layout.partitions_per_shard,
                    quote(&o.layout.fsync),
                    o.layout.default,
                    median(o.rates()),
                    median(o.p99s()),
                    runs.join(", ")
                )
            })
            .collect();
        format!(
            "{{\"load\": {}, \"broker\": {}, \"online_cores\": {}, \"layouts\": [{}], \"recommendation\": {{\"layout\": {}, \"flags\": {}, \"text\": {}}}}}\n",
            quote(&self.command),
            quote(&self.broker),
            self.online,
            layouts.join(", "),
            quote(&self.outcomes[self.best].layout.name()),
            quote(&self.outcomes[self.best].layout.flags().join(" ")),
            quote(&self.recommendation())
        )
    }

    /// Horizontal bars: median throughput per layout, a whisker for the range of runs.
    fn svg(&self) -> String {
        let row = 34.0;
        let (left, right, top) = (330.0, 40.0, 50.0);
        let width = 900.0;
        let height = top + row * self.outcomes.len() as f64 + 50.0;
        let max = self
            .outcomes
            .iter()
            .flat_map(|o| o.rates())
            .fold(1.0, f64::max);
        let scale = (width - left - right) / max;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"##
        );
        let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            svg,
            r##"<text x="10" y="20" font-size="14">ringtail-bench sweep: produce msgs/s by layout (bar: median, line: range of runs)</text>"##
        );
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let _ = writeln!(
            svg,
            r##"<text x="10" y="38" fill="#555">{}</text>"##,
            escape(&self.command)
        );
        for (i, o) in self.outcomes.iter().enumerate() {
            let y = top + row * i as f64;
            let rates = o.rates();
            let (lo, hi) = Outcome::range(&rates);
            let m = median(rates);
            let fill = if i == self.best {
                "#2a7"
            } else if o.layout.default {
                "#888"
            } else {
                "#58c"
            };
            let _ = writeln!(
                svg,
                r##"<text x="10" y="{}">{}</text>"##,
                y + 18.0,
                escape(&o.layout.name())
            );
            let _ = writeln!(
                svg,
                r##"<rect x="{left}" y="{}" width="{:.1}" height="20" fill="{fill}"/>"##,
                y + 4.0,
                m * scale
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="black" stroke-width="2"/>"##,
                left + lo * scale,
                left + hi * scale,
                y + 14.0,
                y + 14.0
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{}">{:.2}M</text>"##,
                left + hi * scale + 6.0,
                y + 18.0,
                m / 1e6
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{}" fill="#2a7">{}</text>"##,
            height - 15.0,
            escape(&self.recommendation())
        );
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SweepArgs {
        SweepArgs {
            broker_bin: None,
            shards: vec![],
            pinned: vec!["no".into(), "yes".into()],
            core_sets: vec![],
            io_workers: vec!["pinned".into()],
            partitions_per_shard: vec![2],
            fsync: vec!["never".into()],
            runs: 3,
            duration: 5.0,
            connections: 2,
            batch_records: 1000,
            size: 200,
            acks: 1,
            json: None,
            svg: None,
        }
    }

    #[test]
    fn the_matrix_starts_with_the_default_and_lists_it_once() {
        let layouts = matrix(&args(), 2).expect("matrix");
        let names: Vec<String> = layouts.iter().map(Layout::name).collect();
        assert_eq!(
            names,
            [
                "2 shards, 2 part/shard, fsync never (default)",
                "1 shard, 2 part/shard, fsync never",
                "1 shard on cores 0, 2 part/shard, fsync never",
                "2 shards on cores 0,1, 2 part/shard, fsync never",
            ]
        );
        assert_eq!(layouts[0].flags(), ["--fsync never"]);
        assert_eq!(
            layouts[3].flags(),
            ["--shards 2", "--cores 0,1", "--fsync never"]
        );
        let mut bad = args();
        bad.shards = vec![3];
        assert!(matrix(&bad, 2).is_err());
        bad.shards = vec![];
        bad.pinned = vec!["maybe".into()];
        assert!(matrix(&bad, 2).is_err());
        for set in ["2", "0,0", "x", ""] {
            let mut bad = args();
            bad.core_sets = vec![set.into()];
            assert!(matrix(&bad, 2).is_err(), "{set}");
        }
        let mut bad = args();
        bad.io_workers = vec!["sometimes".into()];
        assert!(matrix(&bad, 2).is_err());
    }

    #[test]
    fn core_sets_and_io_worker_placement_multiply_the_pinned_layouts() {
        let mut a = args();
        a.pinned = vec!["yes".into()];
        a.core_sets = vec!["1".into(), "0".into(), "1,0".into()];
        a.io_workers = vec!["pinned".into(), "unpinned".into()];
        let layouts = matrix(&a, 2).expect("matrix");
        let names: Vec<String> = layouts.iter().map(Layout::name).collect();
        assert_eq!(
            names,
            [
                "2 shards, 2 part/shard, fsync never (default)",
                "1 shard on cores 1, 2 part/shard, fsync never",
                "1 shard on cores 1, io-wq unpinned, 2 part/shard, fsync never",
                "1 shard on cores 0, 2 part/shard, fsync never",
                "1 shard on cores 0, io-wq unpinned, 2 part/shard, fsync never",
                "2 shards on cores 1,0, 2 part/shard, fsync never",
                "2 shards on cores 1,0, io-wq unpinned, 2 part/shard, fsync never",
            ]
        );
        assert_eq!(
            layouts[6].flags(),
            [
                "--shards 2",
                "--cores 1,0",
                "--pin-io-workers false",
                "--fsync never"
            ]
        );
    }

    #[test]
    fn the_recommendation_says_by_how_much_and_whether_it_is_noise() {
        let layouts = matrix(&args(), 2).expect("matrix");
        let runs = |rates: &[f64]| {
            rates
                .iter()
                .map(|&r| Run {
                    msgs_per_sec: r,
                    p99_us: 1000,
                    io_worker_cpus: vec!["1".into()],
                })
                .collect()
        };
        let outcomes = vec![
            Outcome {
                layout: layouts[0].clone(),
                runs: runs(&[1.0e6, 1.1e6, 0.9e6]),
            },
            Outcome {
                layout: layouts[3].clone(),
                runs: runs(&[1.5e6, 1.6e6, 1.4e6]),
            },
        ];
        let report = Report::new(&args(), &PathBuf::from("ringtail"), 2, outcomes);
        let text = report.recommendation();
        assert!(text.contains("--shards 2 --cores 0,1"), "{text}");
        assert!(text.contains("+50.0%"), "{text}");
        assert!(text.contains("every run of it beat"), "{text}");
        let json = report.json();
        assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
        assert!(json.contains("\"median_msgs_per_sec\": 1500000"), "{json}");
        assert!(report.svg().starts_with("<svg"));
    }
}
