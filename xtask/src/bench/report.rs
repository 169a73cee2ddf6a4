//! The benchmark's table, chart and `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::SizeResult;

/// One line per size as soon as it is measured.
pub fn print_row(r: &SizeResult) {
    eprintln!(
        "bench[{}]: operator {:.1}s, baseline {:.1}s, ratio {:.2}; RSS peak {:.1} MiB settled {:.1} MiB",
        r.n, r.operator_s, r.baseline_s, r.ratio, r.rss_peak_mib, r.rss_settled_mib
    );
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// The results as a Markdown table (also readable on a terminal).
pub fn table(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | baseline s | operator s | ratio | probe p50 s | probe p99 s | RSS peak MiB | RSS settled MiB \
         | CPU sync s | CPU idle s | KV reads sync | logins sync | other Vault sync | Vault idle \
         | Secret writes idle | status writes idle |"
    );
    let _ = writeln!(out, "|{}", "---:|".repeat(16));
    for r in results {
        let idle = r.vault_idle.kv_reads + r.vault_idle.logins + r.vault_idle.other;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.2} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.n,
            r.baseline_s,
            r.operator_s,
            r.ratio,
            secs(r.probe_p50_s),
            secs(r.probe_p99_s),
            r.rss_peak_mib,
            r.rss_settled_mib,
            r.cpu_sync_s,
            r.cpu_idle_s,
            r.vault_sync.kv_reads,
            r.vault_sync.logins,
            r.vault_sync.other,
            idle,
            r.idle_secret_writes,
            r.idle_status_writes,
        );
    }
    out
}

/// Time to all Ready, operator against baseline, as text bars.
pub fn chart(results: &[SizeResult]) -> String {
    const WIDTH: f64 = 50.0;
    let max = results
        .iter()
        .flat_map(|r| [r.operator_s, r.baseline_s])
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let mut out = String::new();
    for r in results {
        for (label, v) in [("baseline", r.baseline_s), ("operator", r.operator_s)] {
            let bar = "#".repeat(((v / max) * WIDTH).round().max(1.0) as usize);
            let _ = writeln!(out, "N={:<6} {label:<9} {bar:<50} {v:>7.1} s", r.n);
        }
    }
    out
}

/// Per-size notes on the operator's own counters.
fn metrics(results: &[SizeResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "N={} CPU seconds of the environment during the baseline writes:",
            r.n
        );
        for (k, v) in &r.components_cpu_baseline_s {
            let _ = writeln!(out, "  {k} {v:.2}");
        }
        let _ = writeln!(
            out,
            "N={} CPU seconds of the environment from the first create to all Ready:",
            r.n
        );
        let _ = writeln!(out, "  vaultsync {:.2} (from its start)", r.cpu_sync_s);
        for (k, v) in &r.components_cpu_sync_s {
            let _ = writeln!(out, "  {k} {v:.2}");
        }
        let _ = writeln!(out, "N={} operator counters during the sync:", r.n);
        for (k, v) in &r.metrics_sync {
            let _ = writeln!(out, "  {k} {v}");
        }
        let _ = writeln!(
            out,
            "N={} operator counters during the {:.0} s idle window:",
            r.n, r.idle_window_s
        );
        if r.metrics_idle.is_empty() {
            let _ = writeln!(out, "  (no change)");
        }
        for (k, v) in &r.metrics_idle {
            let _ = writeln!(out, "  {k} {v}");
        }
    }
    out
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = read("/proc/meminfo");
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} CPUs (nproc), {model}, {mem_gib:.1} GiB memory")
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// What the benchmark does not show yet.
const LIMITS: &str = "\
- One Vault identity: every VaultSecret uses the operator's own token \
(`VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES=*`); per-namespace Kubernetes auth identities are not exercised \
yet, so logins are not measured.
- The baseline does two writes per object; the operator also records an Event when it writes a Secret, \
and its time includes the benchmark's own N creates on the same API server.
- Everything shares the machine's CPUs: the API server, etcd, OpenBao, the operator and the benchmark \
client. Repeated runs differ noticeably (the baseline at N=1,000 took 3.3 s, 4.5 s and 6.9 s in three \
runs); compare figures from the same run.
- Probes are few at small N (one every 2 s while the N sync), so p99 there is close to the maximum.
- Not measured yet: first-sync latency during a refresh, Vault requests per full refresh cycle, \
rotation fan-out.
";

/// Writes `docs/benchmarks.md` from the latest results.
pub fn write_markdown(path: &Path, results: &[SizeResult], command: &str) -> Result<()> {
    let first = results.first();
    let paths = first.map_or(0, |r| r.paths);
    let namespaces = first.map_or(0, |r| r.namespaces);
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "How long vaultsync takes to sync many VaultSecrets, and what it costs, on the local environment \
         (real etcd, kube-apiserver and OpenBao on loopback, everything on one machine). This file is \
         written by the benchmark; run it again to refresh it.\n"
    );
    let _ = writeln!(md, "```sh\n{command}\n```\n");
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Date: {}", date());
    let _ = writeln!(
        md,
        "- Workload: N VaultSecrets over {namespaces} namespaces reading {paths} distinct KV v2 paths, \
         `refresh.interval: 1h`; all with the operator's own token (one Vault identity)."
    );
    let _ = writeln!(md, "- Raw figures: `target/vaultsync-bench/results.json`.\n");
    let _ = writeln!(md, "## Results\n");
    md.push_str(&table(results));
    let _ = writeln!(md, "\n## Time to all Ready\n\n```text\n{}```\n", chart(results));
    let _ = writeln!(md, "## What the columns mean\n");
    let _ = writeln!(
        md,
        "- **baseline s**: a plain kube client doing the API-server writes of a first sync — one \
         server-side apply of a Secret and one server-side apply of a VaultSecret status per object — \
         for N objects, 32 at a time (the operator's default `--concurrency`), no Vault. Measured in \
         the same run, before the operator starts.\n\
         - **operator s**: from the first create of the N VaultSecrets (32 creates at a time, by the \
         benchmark) to the last one seen `Ready=True` by a watch. It includes the creates.\n\
         - **ratio**: operator / baseline, the headline figure (target: at most 1.25 at N=10,000).\n\
         - **probe p50/p99**: a new VaultSecret is applied every 2 s while the N sync; time from its \
         create to `Ready=True`.\n\
         - **RSS**: the operator's `VmHWM` (peak) and `VmRSS` after the idle window (settled), from \
         `/proc/PID/status`.\n\
         - **CPU**: the operator's utime+stime from `/proc/PID/stat`, from its start to all Ready \
         (sync), and over the idle window.\n\
         - **Vault**: requests in OpenBao's audit log, from the operator's start to all Ready (sync) \
         and during the idle window: KV reads, logins, other.\n\
         - **writes idle**: Secrets and VaultSecrets whose resourceVersion changed during the idle \
         window (expected: 0).\n"
    );
    let _ = writeln!(md, "## Limits of this benchmark\n\n{LIMITS}");
    let _ = writeln!(
        md,
        "## CPU of the environment and operator counters\n\n```text\n{}```",
        metrics(results)
    );
    std::fs::write(path, md)?;
    Ok(())
}
