//! `ringtail tune`: checks the Linux settings that matter for this broker and says, for each,
//! what it found, what it recommends and why; `--apply` changes what can be changed (as root).
//!
//! Runs on the main thread of a `ringtail tune` process, never inside a broker. Every check
//! reads files under `root` (`/` unless the hidden `--root` points elsewhere, for tests and for
//! a host's /proc and /sys mounted in a container); nothing is written without `--apply`, and
//! then only the files a finding names.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug, Default, Clone)]
pub struct TuneArgs {
    /// Change the settings that can be changed (needs root); without it nothing is written
    #[arg(long)]
    pub apply: bool,
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
    /// The cores the broker's shards are pinned to (its --cores): device interrupts are
    /// checked against them
    #[arg(long)]
    pub cores: Option<String>,
    /// Read and write /proc and /sys under this directory instead of /
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Already as recommended.
    Ok,
    /// Differs from the recommendation.
    Change,
    /// Could not be checked here (said why).
    Unknown,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Change => "change",
            Status::Unknown => "unknown",
        }
    }
}

/// How a finding is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Write `value` to each file (what `--apply` does).
    Write(Vec<(PathBuf, String)>),
    /// Only a person can: the instruction.
    Manual(String),
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub setting: String,
    pub found: String,
    pub recommended: String,
    pub status: Status,
    pub why: String,
    pub fix: Option<Fix>,
    /// After `--apply`: what happened.
    pub applied: Option<String>,
}

fn finding(
    setting: &str,
    found: impl Into<String>,
    recommended: &str,
    status: Status,
    why: &str,
) -> Finding {
    Finding {
        setting: setting.to_string(),
        found: found.into(),
        recommended: recommended.to_string(),
        status,
        why: why.to_string(),
        fix: None,
        applied: None,
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A sysctl under /proc/sys that should be `want` (by `good`): a finding with a write fix.
fn sysctl(
    root: &Path,
    name: &str,
    recommended: &str,
    good: impl Fn(i64) -> bool,
    why: &str,
) -> Finding {
    let path = format!("proc/sys/{}", name.replace('.', "/"));
    let Some(text) = read(root, &path) else {
        return finding(name, "(not readable)", recommended, Status::Unknown, why);
    };
    let Ok(value) = text.parse::<i64>() else {
        return finding(name, text, recommended, Status::Unknown, why);
    };
    if good(value) {
        return finding(name, text, recommended, Status::Ok, why);
    }
    let mut f = finding(name, text, recommended, Status::Change, why);
    f.fix = Some(Fix::Write(vec![(root.join(path), recommended.to_string())]));
    f
}

fn governor(root: &Path) -> Finding {
    let why = "a shard polls and sleeps in bursts; powersave and ondemand governors clock the core down between them and add latency to every wake-up";
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("sys/devices/system/cpu"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("cpufreq/scaling_governor"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    if files.is_empty() {
        return finding(
            "cpu frequency governor",
            "(no cpufreq in /sys: a VM or container, the host decides)",
            "performance",
            Status::Unknown,
            why,
        );
    }
    let values: Vec<String> = files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    let mut distinct = values.clone();
    distinct.sort();
    distinct.dedup();
    let found = distinct.join(",");
    if distinct == ["performance"] {
        return finding(
            "cpu frequency governor",
            found,
            "performance",
            Status::Ok,
            why,
        );
    }
    let mut f = finding(
        "cpu frequency governor",
        found,
        "performance",
        Status::Change,
        why,
    );
    f.fix = Some(Fix::Write(
        files
            .into_iter()
            .map(|p| (p, "performance".to_string()))
            .collect(),
    ));
    f
}

fn transparent_huge_pages(root: &Path) -> Finding {
    let why = "with THP always, page faults may stall on compaction and khugepaged rewrites memory under the shards; Ringtail asks for no huge pages, so madvise (or never) costs nothing";
    let path = "sys/kernel/mm/transparent_hugepage/enabled";
    let Some(text) = read(root, path) else {
        return finding(
            "transparent huge pages",
            "(not readable)",
            "madvise",
            Status::Unknown,
            why,
        );
    };
    let current = text
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map_or(text.clone(), |w| {
            w.trim_matches(|c| c == '[' || c == ']').to_string()
        });
    if current == "madvise" || current == "never" {
        return finding(
            "transparent huge pages",
            current,
            "madvise",
            Status::Ok,
            why,
        );
    }
    let mut f = finding(
        "transparent huge pages",
        current,
        "madvise",
        Status::Change,
        why,
    );
    f.fix = Some(Fix::Write(vec![(root.join(path), "madvise".into())]));
    f
}

/// (soft, hard) of one line of `/proc/self/limits`, e.g. "Max open files".
fn process_limit(root: &Path, name: &str) -> Option<(String, String)> {
    let limits = read(root, "proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

fn open_files(root: &Path) -> Finding {
    let why = "each partition keeps a segment file open (more while segments roll), and every connection is a descriptor; the broker raises its soft limit to the hard one at start, so the hard limit is what counts";
    let recommended = ">= 1048576 (hard)";
    let Some((soft, hard)) = process_limit(root, "Max open files") else {
        return finding(
            "open files (ulimit -n)",
            "(not readable)",
            recommended,
            Status::Unknown,
            why,
        );
    };
    let found = format!("soft {soft}, hard {hard}");
    let enough = hard == "unlimited" || hard.parse::<u64>().is_ok_and(|h| h >= 1_048_576);
    if enough {
        return finding(
            "open files (ulimit -n)",
            found,
            recommended,
            Status::Ok,
            why,
        );
    }
    let mut f = finding(
        "open files (ulimit -n)",
        found,
        recommended,
        Status::Change,
        why,
    );
    f.fix = Some(Fix::Manual(
        "start the broker with a higher hard limit: LimitNOFILE=1048576 in its systemd unit, or \
         `nofile` in /etc/security/limits.conf (this process cannot raise another's)"
            .into(),
    ));
    f
}

fn kernel_version(root: &Path) -> Option<(u32, u32)> {
    let release = read(root, "proc/sys/kernel/osrelease")?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn locked_memory(root: &Path) -> Finding {
    let setting = "locked memory for io_uring";
    let why = "before Linux 5.12 io_uring rings were charged to RLIMIT_MEMLOCK; since then to the memory cgroup, so the limit no longer matters";
    let limit =
        process_limit(root, "Max locked memory").map_or_else(|| "?".into(), |(soft, _)| soft);
    match kernel_version(root) {
        Some(v) if v >= (5, 12) => finding(
            setting,
            format!("{limit} bytes; kernel {}.{}", v.0, v.1),
            "any (kernel >= 5.12)",
            Status::Ok,
            why,
        ),
        Some(v) => {
            let mut f = finding(
                setting,
                format!("{limit} bytes; kernel {}.{}", v.0, v.1),
                "a kernel >= 6.1 (Ringtail needs it)",
                Status::Change,
                why,
            );
            f.fix = Some(Fix::Manual("upgrade the kernel to 6.1 or later".into()));
            f
        }
        None => finding(
            setting,
            format!("{limit} bytes"),
            "any (kernel >= 5.12)",
            Status::Unknown,
            why,
        ),
    }
}

fn io_uring_enabled(root: &Path) -> Finding {
    let why = "Ringtail does all its I/O through io_uring: 2 refuses it to every process, 1 to those outside kernel.io_uring_group";
    match read(root, "proc/sys/kernel/io_uring_disabled") {
        None => finding(
            "kernel.io_uring_disabled",
            "(absent: a kernel before 6.6, io_uring always on)",
            "0",
            Status::Ok,
            why,
        ),
        Some(v) if v == "0" => finding("kernel.io_uring_disabled", v, "0", Status::Ok, why),
        Some(v) => {
            let mut f = finding("kernel.io_uring_disabled", v, "0", Status::Change, why);
            f.fix = Some(Fix::Write(vec![(
                root.join("proc/sys/kernel/io_uring_disabled"),
                "0".into(),
            )]));
            f
        }
    }
}

fn clock_source(root: &Path) -> Finding {
    let why = "every request reads the clock a few times; tsc and kvm-clock are read in the vDSO without a system call, hpet, acpi_pm and xen are not";
    let dir = "sys/devices/system/clocksource/clocksource0";
    let Some(current) = read(root, &format!("{dir}/current_clocksource")) else {
        return finding(
            "clock source",
            "(not readable)",
            "tsc",
            Status::Unknown,
            why,
        );
    };
    if current == "tsc" || current == "kvm-clock" {
        return finding(
            "clock source",
            current,
            "tsc (kvm-clock in a KVM guest)",
            Status::Ok,
            why,
        );
    }
    let available = read(root, &format!("{dir}/available_clocksource")).unwrap_or_default();
    let mut f = finding("clock source", current, "tsc", Status::Change, why);
    f.fix = Some(if available.split_whitespace().any(|c| c == "tsc") {
        Fix::Write(vec![(
            root.join(format!("{dir}/current_clocksource")),
            "tsc".into(),
        )])
    } else {
        Fix::Manual(format!(
            "tsc is not available here (available: {available}); check the BIOS or hypervisor"
        ))
    });
    f
}

/// The interrupts of network and disk devices (MSI vectors in /sys).
fn device_irqs(root: &Path) -> Vec<(String, Vec<u32>)> {
    let mut devices = Vec::new();
    for (class, skip) in [
        ("sys/class/net", &["lo"][..]),
        ("sys/block", &["loop", "zram", "ram", "dm-"][..]),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(class)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.iter().any(|s| name.starts_with(s)) {
                continue;
            }
            let Ok(device) = std::fs::canonicalize(entry.path().join("device")) else {
                continue;
            };
            let mut irqs: Vec<u32> = [device.join("msi_irqs"), device.join("../msi_irqs")]
                .iter()
                .filter_map(|d| std::fs::read_dir(d).ok())
                .flat_map(|d| d.flatten())
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect();
            irqs.sort_unstable();
            irqs.dedup();
            if !irqs.is_empty() {
                devices.push((name, irqs));
            }
        }
    }
    devices.sort();
    devices
}

fn irq_affinity(root: &Path, shard_cores: Option<&[usize]>, online: usize) -> Vec<Finding> {
    let why = "a device interrupt on a shard's core preempts the shard; with spare cores, keep the NIC's and the disk's interrupts on them";
    let devices = device_irqs(root);
    if devices.is_empty() {
        return vec![finding(
            "device interrupts",
            "(no device MSI vectors in /sys: a container, or legacy interrupts)",
            "off the shard cores",
            Status::Unknown,
            why,
        )];
    }
    let spare: Vec<usize> = match shard_cores {
        Some(cores) => (0..online).filter(|c| !cores.contains(c)).collect(),
        None => Vec::new(),
    };
    let spare_list = spare
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    devices
        .into_iter()
        .map(|(device, irqs)| {
            let setting = format!("interrupts of {device}");
            let mut affinities = Vec::new();
            let mut on_shards = Vec::new();
            for irq in &irqs {
                let path = format!("proc/irq/{irq}/smp_affinity_list");
                let list = read(root, &path).unwrap_or_else(|| "?".into());
                let cores = crate::config::parse_cores(&list).unwrap_or_default();
                if shard_cores.is_some_and(|s| cores.iter().any(|c| s.contains(c))) {
                    on_shards.push((*irq, path));
                }
                affinities.push(format!("{irq}:{list}"));
            }
            let found = affinities.join(" ");
            match shard_cores {
                None => finding(
                    &setting,
                    found,
                    "off the shard cores (give --cores to check)",
                    Status::Unknown,
                    "shards are not pinned (no --cores given): there is no core to keep interrupts away from",
                ),
                Some(_) if on_shards.is_empty() => {
                    finding(&setting, found, "off the shard cores", Status::Ok, why)
                }
                Some(_) if spare.is_empty() => finding(
                    &setting,
                    found,
                    "spread over all cores (every core runs a shard)",
                    Status::Ok,
                    "every core runs a shard, so interrupts must share them; leave them spread (irqbalance)",
                ),
                Some(_) => {
                    let mut f = finding(&setting, found, &format!("cores {spare_list}"), Status::Change, why);
                    f.fix = Some(Fix::Write(
                        on_shards
                            .into_iter()
                            .map(|(_, path)| (root.join(path), spare_list.clone()))
                            .collect(),
                    ));
                    f
                }
            }
        })
        .collect()
}

/// Where this runs, as far as can be told: what a VM or container hides.
pub fn environment(root: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    let cpuinfo = read(root, "proc/cpuinfo").unwrap_or_default();
    if cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
    {
        notes.push("a virtual machine (the CPU reports a hypervisor): the frequency governor, the clock and the physical interrupts are the host's; what is checked here is the guest's view".to_string());
    }
    let container = root.join(".dockerenv").exists()
        || root.join("run/.containerenv").exists()
        || read(root, "proc/1/cgroup").is_some_and(|c| {
            c.contains("docker") || c.contains("kubepods") || c.contains("containerd")
        });
    if container {
        notes.push("a container: /proc/sys and /sys may be read-only or the host's; --apply may be refused, and a change applies to the whole host".to_string());
    }
    notes
}

/// Every finding, in a fixed order.
pub fn check(args: &TuneArgs) -> Result<Vec<Finding>, String> {
    let root = &args.root;
    let shard_cores = match &args.cores {
        Some(text) => Some(crate::config::parse_cores(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut findings = vec![
        governor(root),
        transparent_huge_pages(root),
        sysctl(root, "vm.swappiness", "1", |v| v <= 1,
            "a shard whose memory is swapped out stalls every partition it owns; swap only when nothing else is left"),
        sysctl(root, "vm.dirty_background_ratio", "5", |v| v <= 5,
            "with --fsync never or interval, start writing dirty log pages back early (Kafka's production guidance), so a later fdatasync or memory pressure does not meet gigabytes at once"),
        sysctl(root, "vm.dirty_ratio", "80", |v| v >= 60,
            "above this share of memory, writers are throttled: the io-wq write of a produce blocks; Kafka's production guidance is 60-80"),
        sysctl(root, "fs.pipe-max-size", "1048576", |v| v >= 1_048_576,
            "fetches splice through 1 MiB pipes; a smaller maximum makes every fetch of more than the limit take several splices"),
        open_files(root),
        locked_memory(root),
        io_uring_enabled(root),
        clock_source(root),
    ];
    findings.extend(irq_affinity(root, shard_cores.as_deref(), online));
    Ok(findings)
}

/// Writes the fixes of findings that differ; returns how many writes failed.
pub fn apply(findings: &mut [Finding]) -> usize {
    let mut failed = 0;
    for f in findings.iter_mut().filter(|f| f.status == Status::Change) {
        match &f.fix {
            Some(Fix::Write(writes)) => {
                let mut errors = Vec::new();
                for (path, value) in writes {
                    if let Err(err) = std::fs::write(path, value) {
                        let hint = if err.kind() == std::io::ErrorKind::PermissionDenied {
                            " (needs root)"
                        } else {
                            ""
                        };
                        errors.push(format!("{}: {err}{hint}", path.display()));
                    }
                }
                f.applied = Some(if errors.is_empty() {
                    format!("set to {}", f.recommended)
                } else {
                    failed += 1;
                    format!("failed: {}", errors.join("; "))
                });
            }
            Some(Fix::Manual(how)) => f.applied = Some(format!("not changed: {how}")),
            None => {}
        }
    }
    failed
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

pub fn render_json(findings: &[Finding], notes: &[String]) -> String {
    let items: Vec<String> = findings
        .iter()
        .map(|f| {
            let fix = match &f.fix {
                Some(Fix::Write(w)) => format!(
                    "{{\"write\": [{}]}}",
                    w.iter()
                        .map(|(p, v)| format!("{{\"path\": {}, \"value\": {}}}", json_string(&p.display().to_string()), json_string(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(Fix::Manual(how)) => format!("{{\"manual\": {}}}", json_string(how)),
                None => "null".into(),
            };
            format!(
                "{{\"setting\": {}, \"found\": {}, \"recommended\": {}, \"status\": \"{}\", \"why\": {}, \"fix\": {}, \"applied\": {}}}",
                json_string(&f.setting),
                json_string(&f.found),
                json_string(&f.recommended),
                f.status.name(),
                json_string(&f.why),
                fix,
                f.applied.as_deref().map_or("null".into(), json_string),
            )
        })
        .collect();
    let notes: Vec<String> = notes.iter().map(|n| json_string(n)).collect();
    format!(
        "{{\"findings\": [{}], \"environment\": [{}]}}\n",
        items.join(", "),
        notes.join(", ")
    )
}

pub fn render_table(findings: &[Finding], notes: &[String], applied: bool) -> String {
    let width = |get: fn(&Finding) -> &str, title: &str| {
        findings
            .iter()
            .map(|f| get(f).chars().count())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (ws, wf, wr) = (
        width(|f| &f.setting, "setting"),
        width(|f| &f.found, "found").min(48),
        width(|f| &f.recommended, "recommended"),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<ws$}  {:<wf$}  {:<wr$}  status",
        "setting", "found", "recommended"
    );
    for f in findings {
        let _ = writeln!(
            out,
            "{:<ws$}  {:<wf$}  {:<wr$}  {}",
            f.setting,
            f.found,
            f.recommended,
            f.status.name()
        );
    }
    out.push_str("\nwhy:\n");
    for f in findings {
        let _ = writeln!(out, "- {}: {}", f.setting, f.why);
        if let Some(done) = &f.applied {
            let _ = writeln!(out, "  {done}");
        } else if f.status == Status::Change && !applied {
            match &f.fix {
                Some(Fix::Write(w)) => {
                    for (path, value) in w {
                        let _ = writeln!(out, "  fix (--apply): echo {value} > {}", path.display());
                    }
                }
                Some(Fix::Manual(how)) => {
                    let _ = writeln!(out, "  fix: {how}");
                }
                None => {}
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nwhat could not be checked fully here:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let changes = findings
        .iter()
        .filter(|f| f.status == Status::Change)
        .count();
    let _ = writeln!(
        out,
        "\n{changes} of {} settings differ from the recommendation{}",
        findings.len(),
        if applied || changes == 0 {
            ""
        } else {
            "; run with --apply (as root) to change those that can be"
        }
    );
    out
}

/// `ringtail tune`: the exit status (0, or 1 if --apply could not change something).
pub fn run(args: &TuneArgs) -> i32 {
    let mut findings = match check(args) {
        Ok(findings) => findings,
        Err(err) => {
            eprintln!("ringtail tune: {err}");
            return 2;
        }
    };
    let failed = if args.apply { apply(&mut findings) } else { 0 };
    let notes = environment(&args.root);
    if args.json {
        print!("{}", render_json(&findings, &notes));
    } else {
        print!("{}", render_table(&findings, &notes, args.apply));
    }
    i32::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc and /sys with a few settings off the recommendation.
    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let put = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        put("proc/sys/vm/swappiness", "60\n");
        put("proc/sys/vm/dirty_background_ratio", "10\n");
        put("proc/sys/vm/dirty_ratio", "80\n");
        put("proc/sys/fs/pipe-max-size", "1048576\n");
        put("proc/sys/kernel/io_uring_disabled", "2\n");
        put("proc/sys/kernel/osrelease", "6.18.44-fc\n");
        put(
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        put(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave\n",
        );
        put(
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "performance\n",
        );
        put(
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet\n",
        );
        put(
            "sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm\n",
        );
        put("proc/self/limits", "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 4096                 files\nMax locked memory         8388608              8388608              bytes\n");
        dir
    }

    fn by_name<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.setting == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn check_reports_and_apply_writes_only_what_differs() {
        let root = fake_root();
        let args = TuneArgs {
            root: root.path().to_path_buf(),
            ..TuneArgs::default()
        };
        let findings = check(&args).expect("check");
        let status = |name| by_name(&findings, name).status;
        assert_eq!(status("vm.swappiness"), Status::Change);
        assert_eq!(status("vm.dirty_background_ratio"), Status::Change);
        assert_eq!(status("vm.dirty_ratio"), Status::Ok);
        assert_eq!(status("fs.pipe-max-size"), Status::Ok);
        assert_eq!(status("kernel.io_uring_disabled"), Status::Change);
        assert_eq!(status("transparent huge pages"), Status::Change);
        assert_eq!(status("cpu frequency governor"), Status::Change);
        assert_eq!(
            by_name(&findings, "cpu frequency governor").found,
            "performance,powersave"
        );
        assert_eq!(status("clock source"), Status::Change);
        assert_eq!(status("open files (ulimit -n)"), Status::Change);
        assert_eq!(status("locked memory for io_uring"), Status::Ok);
        assert_eq!(status("device interrupts"), Status::Unknown);
        // Checking wrote nothing.
        let swappiness = root.path().join("proc/sys/vm/swappiness");
        assert_eq!(std::fs::read_to_string(&swappiness).expect("read"), "60\n");

        let mut findings = findings;
        assert_eq!(apply(&mut findings), 0);
        let text = |p: &str| std::fs::read_to_string(root.path().join(p)).expect("read");
        assert_eq!(text("proc/sys/vm/swappiness"), "1");
        assert_eq!(text("proc/sys/vm/dirty_background_ratio"), "5");
        assert_eq!(
            text("proc/sys/vm/dirty_ratio"),
            "80\n",
            "already fine: untouched"
        );
        assert_eq!(text("proc/sys/kernel/io_uring_disabled"), "0");
        assert_eq!(
            text("sys/kernel/mm/transparent_hugepage/enabled"),
            "madvise"
        );
        assert_eq!(
            text("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "performance"
        );
        assert_eq!(
            text("sys/devices/system/clocksource/clocksource0/current_clocksource"),
            "tsc"
        );
        let limits = by_name(&findings, "open files (ulimit -n)");
        assert!(limits
            .applied
            .as_deref()
            .is_some_and(|a| a.starts_with("not changed")));
        // Now everything that can be changed is as recommended.
        let again = check(&args).expect("check");
        for name in [
            "vm.swappiness",
            "kernel.io_uring_disabled",
            "clock source",
            "cpu frequency governor",
        ] {
            assert_eq!(by_name(&again, name).status, Status::Ok, "{name}");
        }
    }

    #[test]
    fn interrupts_on_shard_cores_move_to_the_spare_ones() {
        let root = fake_root();
        let r = root.path();
        let device = r.join("sys/devices/pci0000:00/0000:00:02.0/virtio1");
        std::fs::create_dir_all(device.join("../msi_irqs/35")).expect("mkdir");
        std::fs::create_dir_all(device.join("../msi_irqs/36")).expect("mkdir");
        std::fs::create_dir_all(r.join("sys/block/vda")).expect("mkdir");
        std::os::unix::fs::symlink(&device, r.join("sys/block/vda/device")).expect("link");
        for (irq, list) in [(35, "1"), (36, "0-1")] {
            std::fs::create_dir_all(r.join(format!("proc/irq/{irq}"))).expect("mkdir");
            std::fs::write(r.join(format!("proc/irq/{irq}/smp_affinity_list")), list)
                .expect("write");
        }
        let found = irq_affinity(r, Some(&[0]), 2);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].setting, "interrupts of vda");
        assert_eq!(found[0].found, "35:1 36:0-1");
        assert_eq!(found[0].status, Status::Change);
        assert_eq!(
            found[0].fix,
            Some(Fix::Write(vec![(
                r.join("proc/irq/36/smp_affinity_list"),
                "1".into()
            )]))
        );
        // Every core runs a shard: nothing to move them to.
        assert_eq!(irq_affinity(r, Some(&[0, 1]), 2)[0].status, Status::Ok);
        assert_eq!(irq_affinity(r, None, 2)[0].status, Status::Unknown);
    }

    #[test]
    fn a_write_that_fails_is_reported() {
        let root = fake_root();
        let mut findings = vec![finding("x", "1", "2", Status::Change, "because")];
        findings[0].fix = Some(Fix::Write(vec![(
            root.path().join("no/such/dir/x"),
            "2".into(),
        )]));
        assert_eq!(apply(&mut findings), 1);
        assert!(findings[0]
            .applied
            .as_deref()
            .is_some_and(|a| a.starts_with("failed:")));
    }

    #[test]
    fn json_is_valid_and_complete() {
        let root = fake_root();
        let args = TuneArgs {
            root: root.path().to_path_buf(),
            ..TuneArgs::default()
        };
        let findings = check(&args).expect("check");
        let value: serde_json::Value =
            serde_json::from_str(&render_json(&findings, &["a note".into()])).expect("json");
        assert_eq!(
            value["findings"].as_array().expect("array").len(),
            findings.len()
        );
        assert_eq!(value["environment"][0], "a note");
    }
}
