//! `cargo xtask bench`: the scale benchmark (issue 7). For each size N, on a fresh environment:
//! the baseline (a plain client doing the operator's API-server writes for N objects), then N
//! VaultSecrets synced by the release operator — time to all Ready, first-sync latency of probes
//! applied meanwhile, CPU and memory from `/proc`, Vault requests from the audit log and the
//! operator's metrics, and a 60 s idle window that should cost nothing. With `--interval` of at
//! most 10 minutes, one refresh cycle is observed instead of the idle window (see [`cycle`]).
//!
//! Not part of the test suite: it prints figures, and CI times nothing.

mod args;
mod cluster;
mod cycle;
mod markdown;
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

pub use args::{BenchArgs, Kind};
use args::{command_line, interval};
use cluster::{CONCURRENCY, PROBE_NAMESPACE};
use cycle::Cycle;
use operator::Operator;
use ready::ReadyTracker;
use vault::{AuditLog, Requests};
use xtask::{Env, EnvOptions, workspace_root};

/// Namespaces of the baseline's objects.
const BASELINE_PREFIX: &str = "base";
/// Namespaces of the VaultSecrets the operator syncs.
const BULK_PREFIX: &str = "bulk";
/// Give up on a size after this long without all Ready.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1800);
/// The figures of the idle window.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Idle {
    pub window_s: f64,
    /// Operator CPU seconds over the window.
    pub cpu_s: f64,
    pub vault: Requests,
    pub metrics: BTreeMap<String, f64>,
    /// Secrets and VaultSecrets whose resourceVersion changed (expected: 0).
    pub secret_writes: u64,
    pub status_writes: u64,
}

/// The figures of an operator restart after the idle window: a new process re-checks every
/// VaultSecret (expected: logins ≤ identities, KV reads ≤ distinct pairs, no writes).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Restart {
    /// From the new process's start to every VaultSecret re-checked, seconds.
    pub seconds: f64,
    pub vault: Requests,
    pub secret_writes: u64,
    pub status_writes: u64,
    /// Highest RSS of the new process until every VaultSecret was re-checked (its first listing of
    /// all N at once, where the first process grew with the creates); absent in older rows.
    #[serde(default)]
    pub rss_peak_mib: Option<f64>,
}

/// The figures of one size.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SizeResult {
    /// The command, date and machine of the run.
    pub command: String,
    pub date: String,
    pub machine: String,
    /// `spec.refresh.interval` of the VaultSecrets.
    pub interval: String,
    pub n: usize,
    pub paths: usize,
    pub namespaces: usize,
    /// Each namespace its own Kubernetes-auth identity (else the operator's token for all).
    #[serde(default)]
    pub kubernetes_auth: bool,
    /// The operator watched the benchmark's namespaces only, one watch each.
    #[serde(default)]
    pub watch_namespaces: bool,
    /// Baseline: N Secret applies + N status applies, seconds.
    pub baseline_s: f64,
    /// The N VaultSecret creates before the baseline, with no operator running, seconds: the
    /// API-server work the operator column includes on top of the baseline's.
    #[serde(default)]
    pub creates_alone_s: f64,
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
    /// Peak and current RSS at the end (after the idle window or the refresh cycle).
    pub rss_peak_mib: f64,
    pub rss_settled_mib: f64,
    /// Operator CPU from its start to all Ready (includes start-up and the initial list).
    pub cpu_sync_s: f64,
    /// CPU seconds of kube-apiserver, etcd and OpenBao during the baseline writes.
    pub components_cpu_baseline_s: BTreeMap<String, f64>,
    /// CPU seconds of kube-apiserver, etcd and OpenBao from the first create to all Ready.
    pub components_cpu_sync_s: BTreeMap<String, f64>,
    pub vault_sync: Requests,
    pub metrics_sync: BTreeMap<String, f64>,
    /// Requests kube-apiserver served during the creates alone, the baseline and the sync (from
    /// the first create to all Ready), by "verb resource".
    #[serde(default)]
    pub apiserver_creates: BTreeMap<String, f64>,
    #[serde(default)]
    pub apiserver_baseline: BTreeMap<String, f64>,
    #[serde(default)]
    pub apiserver_sync: BTreeMap<String, f64>,
    /// The idle window (sync runs).
    pub idle: Option<Idle>,
    /// The refresh cycle (refresh runs).
    pub cycle: Option<Cycle>,
    /// The restart after the idle window (sync runs).
    #[serde(default)]
    pub restart: Option<Restart>,
}

impl SizeResult {
    /// What the operator's run cannot beat on this machine: the N creates it includes plus the
    /// baseline's writes, both measured in the same run.
    pub fn floor_s(&self) -> f64 {
        self.creates_alone_s + self.baseline_s
    }

    /// Distinct (identity, path) pairs read: with one identity (the operator's token) the
    /// distinct paths, else the distinct (namespace, path) pairs of the round-robin spread plus
    /// the probes' paths, read with the operator's token.
    pub fn distinct_pairs(&self) -> usize {
        if !self.kubernetes_auth {
            return self.n.min(self.paths);
        }
        let pairs: std::collections::HashSet<(usize, usize)> = (0..self.n)
            .map(|i| (i % self.namespaces.max(1), i % self.paths.max(1)))
            .collect();
        pairs.len() + self.probes.len().min(self.paths)
    }

    /// The namespaces column: how many, and whether the operator watched only them.
    pub fn namespaces_label(&self) -> String {
        if self.watch_namespaces {
            format!("{} watched", self.namespaces)
        } else {
            self.namespaces.to_string()
        }
    }

    /// The run's shape in notes and charts.
    pub fn label(&self) -> String {
        format!("{} ({} ns, {} ids)", self.n, self.namespaces_label(), self.identities())
    }

    /// Vault identities the N use.
    pub fn identities(&self) -> usize {
        if self.kubernetes_auth {
            self.namespaces.min(self.n)
        } else {
            1
        }
    }

    /// The rows a later run of the same shape replaces.
    fn same_shape(&self, row: &serde_json::Value) -> bool {
        row["n"] == self.n
            && row["namespaces"] == self.namespaces
            && row["kubernetes_auth"].as_bool().unwrap_or(false) == self.kubernetes_auth
            && row["watch_namespaces"].as_bool().unwrap_or(false) == self.watch_namespaces
    }
}

/// Runs the benchmark, prints the table, and updates `results-KIND.json` and the section of its kind
/// in `docs/benchmarks.md`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    let dir = root.join("target/vaultsync-bench");
    let kind = Kind::of(interval(args)?);
    let command = command_line(args);
    let binary = if args.image {
        eprintln!("bench: building the operator image's binary (static musl)");
        xtask::image::operator()?;
        root.join(xtask::image::STRIPPED_BINARY)
    } else {
        eprintln!("bench: building the release operator");
        operator::build(&root)?;
        root.join("target/release/vaultsync")
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for &n in &args.sizes {
        let env = Env::up(EnvOptions {
            dir: dir.clone(),
            detached: false,
            node: false,
        })?;
        let result = runtime.block_on(run_size(&env, args, n, &binary, &command));
        let down = env.down();
        let result = result.with_context(|| format!("benchmark with {n} VaultSecrets"))?;
        down?;
        report::print_row(&result);
        results.push(result);
    }
    println!();
    print!("{}", report::table(kind, &results));
    if args.heaptrack {
        println!(
            "\nprofiled with heaptrack, so no results written; the profiles: {}/heaptrack-N.gz \
             (heaptrack_print -f FILE)",
            dir.display()
        );
        return Ok(());
    }
    // Rows of earlier runs of the same kind stay, unless this run measured their size again.
    let suffix = if args.image { "-image" } else { "" };
    let json_path = dir.join(format!("results-{}{suffix}.json", kind.name()));
    let mut rows: Vec<serde_json::Value> = std::fs::read(&json_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    rows.retain(|row| !results.iter().any(|r| r.same_shape(row)));
    rows.extend(
        results
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?,
    );
    rows.sort_by_key(|row| (row["n"].as_u64(), row["namespaces"].as_u64()));
    let kept: Vec<SizeResult> = rows
        .iter()
        .filter_map(|row| serde_json::from_value(row.clone()).ok())
        .collect();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&rows)?)?;
    if args.image {
        println!("\nwrote {}", json_path.display());
        return Ok(());
    }
    markdown::update(&root.join("docs/benchmarks.md"), kind, &kept)?;
    println!("\nwrote {} and docs/benchmarks.md", json_path.display());
    Ok(())
}

async fn run_size(
    env: &Env,
    args: &BenchArgs,
    n: usize,
    binary: &std::path::Path,
    command: &str,
) -> Result<SizeResult> {
    let interval = interval(args)?;
    let namespaces = args.identities.max(1);
    let client = cluster::client(&env.kubeconfig).await?;
    setup(env, &client, args, namespaces).await?;
    let spec = (args.interval.as_str(), args.kubernetes_auth);

    eprintln!("bench[{n}]: baseline ({n} Secret applies + {n} status applies, {CONCURRENCY} at a time)");
    let requests_start = cluster::apiserver_requests(&client).await?;
    let creates_alone = cluster::create_bulk(&client, BASELINE_PREFIX, n, namespaces, args.paths, spec).await?;
    let requests_created = cluster::apiserver_requests(&client).await?;
    let cpu_before_baseline = operator::component_cpu(&env.dir);
    let baseline = cluster::baseline(&client, BASELINE_PREFIX, n, namespaces).await?;
    let cpu_baseline = operator::counter_delta(&cpu_before_baseline, &operator::component_cpu(&env.dir));
    let requests_baseline = cluster::apiserver_requests(&client).await?;
    cluster::delete_labelled(&client, BASELINE_PREFIX, namespaces).await?;
    eprintln!("bench[{n}]: baseline {:.1}s", baseline.as_secs_f64());

    let (tracker, _watch) = ReadyTracker::start(&client);
    let audit = AuditLog::of(env);
    let log = env.dir.join("logs/vaultsync.log");
    let audit_start = audit.mark()?;
    let profile = args.heaptrack.then(|| env.dir.join(format!("heaptrack-{n}.gz")));
    let watch = args.watch_namespaces.then(|| {
        (0..namespaces)
            .map(|k| format!("{BULK_PREFIX}-{k}"))
            .chain([PROBE_NAMESPACE.to_owned()])
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut op = Operator::start(binary, env, &log, profile.as_deref(), watch.as_deref())?;
    let cpu_start = op.usage()?.cpu_seconds;
    wait_metrics(&mut op).await?;
    let metrics_start = op.counters()?;

    eprintln!("bench[{n}]: creating {n} VaultSecrets and waiting for all Ready");
    let cpu_before_sync = operator::component_cpu(&env.dir);
    let requests_before_sync = cluster::apiserver_requests(&client).await?;
    let started = Instant::now();
    let (create, probes) = tokio::join!(
        cluster::create_bulk(&client, BULK_PREFIX, n, namespaces, args.paths, spec),
        probe(&client, &tracker, args, n),
    );
    let create = create?;
    let (probes, ready_at) = probes?;
    let operator_s = ready_at.duration_since(started).as_secs_f64();
    let ready_usage = op.usage()?;
    let cpu_sync = operator::counter_delta(&cpu_before_sync, &operator::component_cpu(&env.dir));
    let metrics_ready = op.counters()?;
    let requests_ready = cluster::apiserver_requests(&client).await?;
    let audit_ready = audit.mark()?;
    eprintln!("bench[{n}]: all Ready after {operator_s:.1}s");
    // Let the last status writes land before the idle window or the cycle starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (idle, cycle) = match Kind::of(interval) {
        Kind::Sync => (Some(idle_window(&client, &op, &audit, args, namespaces).await?), None),
        Kind::Refresh => {
            let setup = cycle::Setup {
                env,
                client: &client,
                tracker: &tracker,
                op: &op,
                audit: &audit,
                args,
                n,
                namespaces,
                interval,
            };
            (None, Some(cycle::observe(setup).await?))
        }
    };
    op.check_alive()?;
    let settled = op.usage()?;
    let restart = match idle {
        Some(_) => {
            drop(op);
            let total = n + probes.len();
            let start = RestartStart {
                env,
                client: &client,
                audit: &audit,
                binary,
                watch: watch.as_deref(),
            };
            Some(restart(start, namespaces, total).await?)
        }
        None => None,
    };

    let mut sorted = probes.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(SizeResult {
        command: command.to_owned(),
        date: report::date(),
        machine: report::machine(),
        interval: args.interval.clone(),
        n,
        paths: args.paths,
        namespaces,
        kubernetes_auth: args.kubernetes_auth,
        watch_namespaces: args.watch_namespaces,
        baseline_s: baseline.as_secs_f64(),
        creates_alone_s: creates_alone.as_secs_f64(),
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
        components_cpu_baseline_s: cpu_baseline,
        components_cpu_sync_s: cpu_sync,
        vault_sync: audit.count(audit_start, audit_ready)?,
        metrics_sync: operator::counter_delta(&metrics_start, &metrics_ready),
        apiserver_creates: operator::counter_delta(&requests_start, &requests_created),
        apiserver_baseline: operator::counter_delta(&requests_created, &requests_baseline),
        apiserver_sync: operator::counter_delta(&requests_before_sync, &requests_ready),
        idle,
        cycle,
        restart,
    })
}

/// What a restart needs of the run.
struct RestartStart<'a> {
    env: &'a Env,
    client: &'a Client,
    audit: &'a AuditLog,
    binary: &'a std::path::Path,
    watch: Option<&'a str>,
}

/// Starts a new operator process (the old one is gone) and measures its re-check of all `total`
/// VaultSecrets: until its syncs count reaches `total`.
async fn restart(run: RestartStart<'_>, namespaces: usize, total: usize) -> Result<Restart> {
    eprintln!("bench: restarting the operator; waiting for it to re-check all {total}");
    let watched: Vec<String> = (0..namespaces)
        .map(|k| format!("{BULK_PREFIX}-{k}"))
        .chain([PROBE_NAMESPACE.to_owned()])
        .collect();
    let versions_before = cluster::resource_versions(run.client, &watched).await?;
    let audit_start = run.audit.mark()?;
    let log = run.env.dir.join("logs/vaultsync-restarted.log");
    let started = Instant::now();
    let mut op = Operator::start(run.binary, run.env, &log, None, run.watch)?;
    loop {
        op.check_alive()?;
        let syncs: f64 = op
            .counters()
            .unwrap_or_default()
            .iter()
            .filter(|(k, _)| k.starts_with("vaultsync_syncs_total{"))
            .map(|(_, v)| v)
            .sum();
        if syncs >= total as f64 {
            break;
        }
        if started.elapsed() > SYNC_TIMEOUT {
            bail!("the restarted operator re-checked {syncs} of {total} within {SYNC_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss_peak_mib = Some(op.usage()?.hwm_mib);
    // Writes, if any, land just after the sync that makes them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let vault = run.audit.count(audit_start, run.audit.mark()?)?;
    let versions_after = cluster::resource_versions(run.client, &watched).await?;
    let (secret_writes, status_writes) = cluster::changed(&versions_before, &versions_after);
    Ok(Restart {
        seconds,
        vault,
        secret_writes,
        status_writes,
        rss_peak_mib,
    })
}

/// The idle window after all are Ready: nothing is due, so nothing should happen.
async fn idle_window(
    client: &Client,
    op: &Operator,
    audit: &AuditLog,
    args: &BenchArgs,
    namespaces: usize,
) -> Result<Idle> {
    eprintln!("bench: idle window {}s", args.idle);
    let watched: Vec<String> = (0..namespaces)
        .map(|k| format!("{BULK_PREFIX}-{k}"))
        .chain([PROBE_NAMESPACE.to_owned()])
        .collect();
    let versions_before = cluster::resource_versions(client, &watched).await?;
    let usage_start = op.usage()?;
    let metrics_start = op.counters()?;
    let audit_start = audit.mark()?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let window_s = started.elapsed().as_secs_f64();
    let usage_end = op.usage()?;
    let metrics_end = op.counters()?;
    let vault = audit.count(audit_start, audit.mark()?)?;
    let versions_after = cluster::resource_versions(client, &watched).await?;
    let (secret_writes, status_writes) = cluster::changed(&versions_before, &versions_after);
    Ok(Idle {
        window_s,
        cpu_s: usage_end.cpu_seconds - usage_start.cpu_seconds,
        vault,
        metrics: operator::counter_delta(&metrics_start, &metrics_end),
        secret_writes,
        status_writes,
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
    if args.kubernetes_auth {
        eprintln!("bench: {namespaces} Kubernetes-auth identities");
        for k in 0..namespaces {
            cluster::create_service_account(client, &format!("{BULK_PREFIX}-{k}")).await?;
        }
        let roles: Vec<String> = (0..namespaces).map(|k| format!("{BULK_PREFIX}-{k}")).collect();
        vault::kubernetes_auth(env, &roles, cluster::SERVICE_ACCOUNT)?;
    }
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
            let path = cluster::bulk_path(sent.len(), args.paths);
            let obj = cluster::vault_secret(&name, PROBE_NAMESPACE, &path, &args.interval, false)?;
            let at = Instant::now();
            api.create(&PostParams::default(), &obj).await?;
            sent.push((format!("{PROBE_NAMESPACE}/{name}"), at));
            next_probe += every;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok((probe_latencies(tracker, &sent).await, last_bulk))
}

/// Create-to-Ready latency of each probe `(namespace/name, created)`, waiting up to 60 s for the
/// last ones; probes not Ready by then are left out.
async fn probe_latencies(tracker: &ReadyTracker, sent: &[(String, Instant)]) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::new();
    for (key, at) in sent {
        loop {
            if let Some(ready) = tracker.ready_at(key) {
                latencies.push(ready.duration_since(*at).as_secs_f64());
                break;
            }
            if Instant::now() > deadline {
                eprintln!("bench: probe {key} not Ready within 60s; left out");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    latencies
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
