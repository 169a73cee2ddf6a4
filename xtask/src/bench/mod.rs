//! `cargo xtask bench`: the scale benchmark (issue 7). For each size N, on a fresh environment:
//! the baseline (a plain client doing the operator's API-server writes for N objects), then N
//! VaultSecrets synced by the release operator — time to all Ready, first-sync latency of probes
//! applied meanwhile, CPU and memory from `/proc`, Vault requests from the audit log and the
//! operator's metrics, and a 60 s idle window that should cost nothing.
//!
//! Not part of the test suite: it prints figures, and CI times nothing.

mod cluster;
mod operator;
mod ready;
mod report;
mod vault;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Client;
use kube::api::PostParams;
use serde::Serialize;

use crate::{Env, EnvOptions, workspace_root};
use cluster::{CONCURRENCY, PROBE_NAMESPACE};
use operator::Operator;
use ready::ReadyTracker;
use vault::{AuditLog, Requests};

/// Namespaces of the baseline's objects.
const BASELINE_PREFIX: &str = "base";
/// Namespaces of the VaultSecrets the operator syncs.
const BULK_PREFIX: &str = "bulk";
/// Give up on a size after this long without all Ready.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1800);

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Numbers of VaultSecrets, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub sizes: Vec<usize>,
    /// Distinct KV paths the VaultSecrets read.
    #[arg(long, default_value_t = 300)]
    pub paths: usize,
    /// Namespaces the VaultSecrets are spread over (all use the operator's own token for now).
    #[arg(long, default_value_t = 4)]
    pub identities: usize,
    /// Length of the idle window after everything is Ready, seconds.
    #[arg(long, default_value_t = 60)]
    pub idle: u64,
    /// Seconds between first-sync latency probes during the bulk sync.
    #[arg(long, default_value_t = 2.0)]
    pub probe_every: f64,
}

/// The figures of one size.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub n: usize,
    pub paths: usize,
    pub namespaces: usize,
    /// Baseline: N Secret applies + N status applies, seconds.
    pub baseline_s: f64,
    /// From the first create of the N VaultSecrets to the last one Ready, seconds.
    pub operator_s: f64,
    /// How long the N creates took (inside `operator_s`), seconds.
    pub create_s: f64,
    pub ratio: f64,
    /// First-sync latency of probes applied during the bulk sync, seconds.
    pub probes: Vec<f64>,
    pub probe_p50_s: Option<f64>,
    pub probe_p99_s: Option<f64>,
    pub rss_ready_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_settled_mib: f64,
    /// Operator CPU from its start to all Ready (includes start-up and the initial list).
    pub cpu_sync_s: f64,
    pub cpu_idle_s: f64,
    /// CPU seconds of kube-apiserver, etcd and OpenBao during the baseline writes.
    pub components_cpu_baseline_s: BTreeMap<String, f64>,
    /// CPU seconds of kube-apiserver, etcd and OpenBao from the first create to all Ready.
    pub components_cpu_sync_s: BTreeMap<String, f64>,
    pub idle_window_s: f64,
    pub vault_sync: Requests,
    pub vault_idle: Requests,
    pub metrics_sync: BTreeMap<String, f64>,
    pub metrics_idle: BTreeMap<String, f64>,
    pub idle_secret_writes: u64,
    pub idle_status_writes: u64,
}

/// Runs the benchmark, prints the table, writes `results.json` and `docs/benchmarks.md`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    let dir = root.join("target/vaultsync-bench");
    eprintln!("bench: building the release operator");
    operator::build(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for &n in &args.sizes {
        let env = Env::up(EnvOptions {
            dir: dir.clone(),
            detached: false,
        })?;
        let result = runtime.block_on(run_size(&env, args, n, &root));
        let down = env.down();
        let result = result.with_context(|| format!("benchmark with {n} VaultSecrets"))?;
        down?;
        report::print_row(&result);
        results.push(result);
    }
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("results.json"), json)?;
    println!();
    print!("{}", report::table(&results));
    let command = command_line(args);
    report::write_markdown(&root.join("docs/benchmarks.md"), &results, &command)?;
    println!("\nwrote {} and docs/benchmarks.md", dir.join("results.json").display());
    Ok(())
}

async fn run_size(env: &Env, args: &BenchArgs, n: usize, root: &std::path::Path) -> Result<SizeResult> {
    let namespaces = args.identities.max(1);
    let client = cluster::client(&env.kubeconfig).await?;
    setup(env, &client, args, namespaces).await?;

    eprintln!("bench[{n}]: baseline ({n} Secret applies + {n} status applies, {CONCURRENCY} at a time)");
    cluster::create_bulk(&client, BASELINE_PREFIX, n, namespaces, args.paths).await?;
    let cpu_before_baseline = operator::component_cpu(&env.dir);
    let baseline = cluster::baseline(&client, BASELINE_PREFIX, n, namespaces).await?;
    let cpu_baseline = operator::counter_delta(&cpu_before_baseline, &operator::component_cpu(&env.dir));
    cluster::delete_labelled(&client, BASELINE_PREFIX, namespaces).await?;
    eprintln!("bench[{n}]: baseline {:.1}s", baseline.as_secs_f64());

    let (tracker, _watch) = ReadyTracker::start(&client);
    let audit = AuditLog::of(env);
    let log = env.dir.join("logs/vaultsync.log");
    let audit_start = audit.mark()?;
    let mut op = Operator::start(root, env, &log)?;
    let cpu_start = op.usage()?.cpu_seconds;
    wait_metrics(&mut op).await?;
    let metrics_start = op.counters()?;

    eprintln!("bench[{n}]: creating {n} VaultSecrets and waiting for all Ready");
    let cpu_before_sync = operator::component_cpu(&env.dir);
    let started = Instant::now();
    let (create, probes) = tokio::join!(
        cluster::create_bulk(&client, BULK_PREFIX, n, namespaces, args.paths),
        probe(&client, &tracker, args, n),
    );
    let create = create?;
    let (probes, ready_at) = probes?;
    let operator_s = ready_at.duration_since(started).as_secs_f64();
    let ready_usage = op.usage()?;
    let cpu_sync = operator::counter_delta(&cpu_before_sync, &operator::component_cpu(&env.dir));
    let metrics_ready = op.counters()?;
    let audit_ready = audit.mark()?;
    eprintln!(
        "bench[{n}]: all Ready after {operator_s:.1}s; idle window {}s",
        args.idle
    );

    let watched: Vec<String> = (0..namespaces)
        .map(|k| format!("{BULK_PREFIX}-{k}"))
        .chain([PROBE_NAMESPACE.to_owned()])
        .collect();
    // Let the last status writes land before the idle window starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions_before = cluster::resource_versions(&client, &watched).await?;
    let idle_usage_start = op.usage()?;
    let idle_audit_start = audit.mark()?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    op.check_alive()?;
    let idle_window_s = idle_started.elapsed().as_secs_f64();
    let settled = op.usage()?;
    let metrics_end = op.counters()?;
    let versions_after = cluster::resource_versions(&client, &watched).await?;
    let (idle_secret_writes, idle_status_writes) = cluster::changed(&versions_before, &versions_after);

    let mut sorted = probes.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(SizeResult {
        n,
        paths: args.paths,
        namespaces,
        baseline_s: baseline.as_secs_f64(),
        operator_s,
        create_s: create.as_secs_f64(),
        ratio: operator_s / baseline.as_secs_f64().max(1e-9),
        probe_p50_s: percentile(&sorted, 0.50),
        probe_p99_s: percentile(&sorted, 0.99),
        probes,
        rss_ready_mib: ready_usage.rss_mib,
        rss_peak_mib: settled.hwm_mib,
        rss_settled_mib: settled.rss_mib,
        cpu_sync_s: ready_usage.cpu_seconds - cpu_start,
        cpu_idle_s: settled.cpu_seconds - idle_usage_start.cpu_seconds,
        components_cpu_baseline_s: cpu_baseline,
        components_cpu_sync_s: cpu_sync,
        idle_window_s,
        vault_sync: audit.count(audit_start, audit_ready)?,
        vault_idle: audit.count(idle_audit_start, audit.mark()?)?,
        metrics_sync: operator::counter_delta(&metrics_start, &metrics_ready),
        metrics_idle: operator::counter_delta(&metrics_ready, &metrics_end),
        idle_secret_writes,
        idle_status_writes,
    })
}

/// CRD, namespaces and KV secrets.
async fn setup(env: &Env, client: &Client, args: &BenchArgs, namespaces: usize) -> Result<()> {
    let root = workspace_root();
    let kubectl = |cmd_args: &[&str]| -> Result<()> {
        let out = env.kubectl().current_dir(&root).args(cmd_args).output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                cmd_args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    kubectl(&["apply", "-f", "crds/vaultsecret.yaml"])?;
    kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/vaultsecrets.vaultsync.dev",
    ])?;
    cluster::create_namespace(client, "vaultsync-system").await?;
    cluster::create_namespace(client, PROBE_NAMESPACE).await?;
    for k in 0..namespaces {
        cluster::create_namespace(client, &format!("{BASELINE_PREFIX}-{k}")).await?;
        cluster::create_namespace(client, &format!("{BULK_PREFIX}-{k}")).await?;
    }
    vault::write_paths(env, args.paths)?;
    Ok(())
}

/// Applies a probe VaultSecret every `probe_every` seconds until all N bulk VaultSecrets are
/// Ready, then waits for the probes. Returns each probe's create-to-Ready latency and when the
/// last bulk VaultSecret became Ready.
async fn probe(client: &Client, tracker: &ReadyTracker, args: &BenchArgs, n: usize) -> Result<(Vec<f64>, Instant)> {
    let api = cluster::vault_secrets(client, PROBE_NAMESPACE);
    let started = Instant::now();
    let every = Duration::from_secs_f64(args.probe_every.max(0.1));
    let mut next_probe = started + every;
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let bulk_prefix = format!("{BULK_PREFIX}-");
    let last_bulk = loop {
        let (ready, last) = tracker.count(&bulk_prefix);
        if ready >= n
            && let Some(last) = last
        {
            break last;
        }
        if started.elapsed() > SYNC_TIMEOUT {
            bail!("only {ready} of {n} VaultSecrets Ready after {SYNC_TIMEOUT:?}");
        }
        if Instant::now() >= next_probe {
            let name = format!("probe-{}", sent.len());
            let obj = cluster::vault_secret(&name, PROBE_NAMESPACE, sent.len() % args.paths.max(1))?;
            let at = Instant::now();
            api.create(&PostParams::default(), &obj).await?;
            sent.push((format!("{PROBE_NAMESPACE}/{name}"), at));
            next_probe += every;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::new();
    for (key, at) in &sent {
        loop {
            if let Some(ready) = tracker.ready_at(key) {
                latencies.push(ready.duration_since(*at).as_secs_f64());
                break;
            }
            if Instant::now() > deadline {
                eprintln!("bench: probe {key} not Ready within 60s of the bulk; left out");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok((latencies, last_bulk))
}

/// Waits until the operator serves `/metrics`.
async fn wait_metrics(op: &mut Operator) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        op.check_alive()?;
        if op.counters().is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the operator did not serve /metrics within 30s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

fn command_line(args: &BenchArgs) -> String {
    let sizes: Vec<String> = args.sizes.iter().map(ToString::to_string).collect();
    format!(
        "cargo xtask bench --sizes {} --paths {} --identities {}",
        sizes.join(","),
        args.paths,
        args.identities
    )
}
