//! The benchmark's tables, chart and notes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use super::cycle::Cycle;
use super::{Idle, Kind, Restart, SizeResult};

/// One line per size as soon as it is measured.
pub fn print_row(r: &SizeResult) {
    eprintln!(
        "bench[{}]: operator {:.1}s, floor {:.1}s (creates alone {:.1}s + baseline {:.1}s), ratio to floor {:.2}, to baseline {:.2}; RSS peak {:.1} MiB settled {:.1} MiB",
        r.n,
        r.operator_s,
        r.floor_s(),
        r.creates_alone_s,
        r.baseline_s,
        r.operator_s / r.floor_s().max(1e-9),
        r.ratio,
        r.rss_peak_mib,
        r.rss_settled_mib
    );
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// The results of one kind of run as a Markdown table (also readable on a terminal).
pub fn table(kind: Kind, results: &[SizeResult]) -> String {
    match kind {
        Kind::Sync => sync_table(results),
        Kind::Refresh => refresh_table(results),
    }
}

fn sync_table(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | ns | ids | baseline s | creates alone s | floor s | operator s | ratio to floor | ratio to baseline | probe p50 s \
         | probe p99 s | RSS peak MiB | RSS settled MiB | CPU sync s | CPU idle s | KV reads sync | distinct pairs \
         | logins sync | other Vault sync | Vault idle | Secret writes idle | status writes idle \
         | restart s | restart logins | restart KV reads | restart writes | restart RSS peak MiB |"
    );
    let _ = writeln!(out, "|{}", "---:|".repeat(27));
    for r in results {
        // Without an idle window (a refresh run) the idle columns would be misleading zeros.
        let idle = |f: &dyn Fn(&Idle) -> String| r.idle.as_ref().map_or_else(|| "-".to_owned(), f);
        let restart = |f: &dyn Fn(&Restart) -> String| r.restart.as_ref().map_or_else(|| "-".to_owned(), f);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            r.namespaces_label(),
            r.identities(),
            r.baseline_s,
            r.creates_alone_s,
            r.floor_s(),
            r.operator_s,
            r.operator_s / r.floor_s().max(1e-9),
            r.ratio,
            secs(r.probe_p50_s),
            secs(r.probe_p99_s),
            r.rss_peak_mib,
            r.rss_settled_mib,
            r.cpu_sync_s,
            idle(&|i| format!("{:.2}", i.cpu_s)),
            r.vault_sync.kv_reads,
            r.distinct_pairs(),
            r.vault_sync.logins,
            r.vault_sync.other,
            idle(&|i| (i.vault.kv_reads + i.vault.logins + i.vault.other).to_string()),
            idle(&|i| i.secret_writes.to_string()),
            idle(&|i| i.status_writes.to_string()),
            restart(&|x| format!("{:.1}", x.seconds)),
            restart(&|x| x.vault.logins.to_string()),
            restart(&|x| x.vault.kv_reads.to_string()),
            restart(&|x| (x.secret_writes + x.status_writes).to_string()),
            restart(&|x| x.rss_peak_mib.map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"))),
        );
    }
    out
}

fn refresh_table(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | interval | operator s | ratio | KV reads / cycle | distinct pairs | logins / cycle \
         | other Vault / cycle | cycle probe p50 s | cycle probe p99 s | rotation K | rotation s \
         | Secret writes unchanged | status writes unchanged | CPU cycle s | RSS peak MiB | RSS settled MiB |"
    );
    let _ = writeln!(out, "|{}", "---:|".repeat(17));
    for r in results {
        let Some(c) = &r.cycle else { continue };
        let rotation = match c.rotation_s {
            Some(s) => format!("{s:.1}"),
            None => format!("- ({} of {})", c.rotation_updated, c.rotation_k),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} |",
            r.n,
            r.interval,
            r.operator_s,
            r.ratio,
            c.bulk_reads,
            c.distinct_pairs,
            c.vault_interval.logins,
            c.vault_interval.other,
            secs(c.probe_p50_s),
            secs(c.probe_p99_s),
            c.rotation_k,
            rotation,
            c.secret_writes_unchanged,
            c.status_writes_unchanged,
            c.cpu_s,
            r.rss_peak_mib,
            r.rss_settled_mib,
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
            let n = r.label();
            let _ = writeln!(out, "N={n:<24} {label:<9} {bar:<50} {v:>7.1} s");
        }
    }
    out
}

/// Per-size notes: CPU of the environment, Vault requests and the operator's own counters.
pub fn notes(results: &[SizeResult]) -> String {
    let mut out = String::new();
    for r in results {
        let n = r.label();
        let _ = writeln!(out, "N={n} CPU seconds of the environment during the baseline writes:");
        for (k, v) in &r.components_cpu_baseline_s {
            let _ = writeln!(out, "  {k} {v:.2}");
        }
        let _ = writeln!(
            out,
            "N={n} CPU seconds of the environment from the first create to all Ready:"
        );
        let _ = writeln!(out, "  vaultsync {:.2} (from its start)", r.cpu_sync_s);
        for (k, v) in &r.components_cpu_sync_s {
            let _ = writeln!(out, "  {k} {v:.2}");
        }
        for (what, requests) in [
            ("the creates alone", &r.apiserver_creates),
            ("the baseline writes", &r.apiserver_baseline),
            (
                "the sync (creates, operator and the benchmark's watch)",
                &r.apiserver_sync,
            ),
        ] {
            if !requests.is_empty() {
                let _ = writeln!(out, "N={n} kube-apiserver requests during {what} (from its metrics):");
                counters(&mut out, requests);
            }
        }
        let _ = writeln!(out, "N={n} operator counters during the sync:");
        counters(&mut out, &r.metrics_sync);
        if let Some(i) = &r.idle {
            let _ = writeln!(
                out,
                "N={n} operator counters during the {:.0} s idle window:",
                i.window_s
            );
            counters(&mut out, &i.metrics);
        }
        if let Some(c) = &r.cycle {
            cycle_notes(&mut out, r.n, c);
        }
    }
    out
}

fn cycle_notes(out: &mut String, n: usize, c: &Cycle) {
    let v = &c.vault_interval;
    let _ = writeln!(
        out,
        "N={n} Vault requests in the first {:.0} s (one interval) of the cycle: {} KV reads ({} of \
         the bulk paths, over {} distinct paths, {} of them read more than once; {} by probes), {} logins, {} other",
        c.interval_s,
        v.kv_reads,
        c.bulk_reads,
        c.bulk_paths_read,
        c.bulk_paths_read_again,
        c.probe_reads,
        v.logins,
        v.other
    );
    let w = &c.vault_window;
    let _ = writeln!(
        out,
        "N={n} Vault requests over the whole {:.0} s window: {} KV reads, {} logins, {} other",
        c.window_s, w.kv_reads, w.logins, w.other
    );
    let _ = writeln!(
        out,
        "N={n} probes during the cycle: {} Ready; writes of the {} VaultSecrets of the rotated path: \
         {} Secrets, {} statuses",
        c.probes.len(),
        c.rotation_k,
        c.secret_writes_rotated,
        c.status_writes_rotated
    );
    let _ = writeln!(out, "N={n} CPU seconds of the environment during the cycle:");
    let _ = writeln!(out, "  vaultsync {:.2}", c.cpu_s);
    for (k, v) in &c.components_cpu_s {
        let _ = writeln!(out, "  {k} {v:.2}");
    }
    let _ = writeln!(out, "N={n} operator counters during the cycle:");
    counters(out, &c.metrics);
}

fn counters(out: &mut String, counters: &BTreeMap<String, f64>) {
    if counters.is_empty() {
        let _ = writeln!(out, "  (no change)");
    }
    for (k, v) in counters {
        let _ = writeln!(out, "  {k} {v}");
    }
}

/// The machine, for the record.
pub fn machine() -> String {
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

/// Now, to the minute.
pub fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
