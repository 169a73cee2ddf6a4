//! The refresh-cycle phase, run when `--interval` is at most 10 minutes: after all N are Ready,
//! one full refresh cycle is observed — Vault requests per cycle, first-sync latency of probes
//! applied while the N refresh, how long a rotated value takes to reach every Secret reading it,
//! and the writes a refresh of unchanged data should not make.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use serde::{Deserialize, Serialize};

use super::cluster::{self, PROBE_NAMESPACE};
use super::operator::{self, Operator};
use super::ready::ReadyTracker;
use super::vault::{self, AuditLog, PROBE_PATH, Requests};
use super::{BULK_PREFIX, BenchArgs, percentile, probe_latencies};
use xtask::Env;

/// The observed cycle is the interval plus this fraction, so every grid point falls in it.
const CYCLE_MARGIN: f64 = 0.15;
/// The bulk path whose value the cycle rotates.
const ROTATED: usize = 0;

/// The figures of one refresh cycle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cycle {
    /// The bulk VaultSecrets' `refresh.interval`, seconds.
    pub interval_s: f64,
    /// How long the cycle was observed (the interval plus 15 %), seconds.
    pub window_s: f64,
    /// Vault requests in the first interval of the window — every refresh grid point falls in
    /// it exactly once — including the probes' reads.
    pub vault_interval: Requests,
    /// Vault requests over the whole window.
    pub vault_window: Requests,
    /// KV reads of the bulk paths in the first interval (the refreshes), and how many distinct
    /// paths they were.
    pub bulk_reads: u64,
    pub bulk_paths_read: usize,
    /// Bulk paths read more than once in that interval: refreshes of one path not coalesced.
    #[serde(default)]
    pub bulk_paths_read_again: usize,
    /// KV reads of the probes' own path in the first interval.
    pub probe_reads: u64,
    /// Distinct (identity, path) pairs the bulk VaultSecrets read: the target of `bulk_reads`.
    pub distinct_pairs: usize,
    /// First-sync latency of probes applied during the window, seconds.
    pub probes: Vec<f64>,
    pub probe_p50_s: Option<f64>,
    pub probe_p99_s: Option<f64>,
    /// Bulk VaultSecrets reading the rotated path, and how many of their Secrets got its new
    /// value within the window.
    pub rotation_k: usize,
    pub rotation_updated: usize,
    /// From the rotating write to the last of the K Secrets holding the new value, seconds
    /// (`None` when not all did by the end of the window, or the interval plus 15 s if later).
    pub rotation_s: Option<f64>,
    /// Secrets and VaultSecrets (status) of the bulk whose resourceVersion changed during the
    /// window, for the paths not rotated (expected: 0) and for the rotated one (expected: K).
    pub secret_writes_unchanged: u64,
    pub status_writes_unchanged: u64,
    pub secret_writes_rotated: u64,
    pub status_writes_rotated: u64,
    /// Operator CPU seconds over the window.
    pub cpu_s: f64,
    /// CPU seconds of kube-apiserver, etcd and OpenBao over the window.
    pub components_cpu_s: BTreeMap<String, f64>,
    /// Operator counters over the window.
    pub metrics: BTreeMap<String, f64>,
}

/// What the cycle needs from the run.
pub struct Setup<'a> {
    pub env: &'a Env,
    pub client: &'a Client,
    pub tracker: &'a ReadyTracker,
    pub op: &'a Operator,
    pub audit: &'a AuditLog,
    pub args: &'a BenchArgs,
    pub n: usize,
    pub namespaces: usize,
    pub interval: Duration,
}

/// Observes one refresh cycle of the N bulk VaultSecrets, all Ready.
pub async fn observe(s: Setup<'_>) -> Result<Cycle> {
    let Setup {
        env,
        client,
        tracker,
        op,
        audit,
        args,
        n,
        namespaces,
        interval,
    } = s;
    let window = interval.mul_f64(1.0 + CYCLE_MARGIN);
    let bulk: Vec<String> = (0..namespaces).map(|k| format!("{BULK_PREFIX}-{k}")).collect();
    let rotated: Vec<(String, String)> = (0..n)
        .filter(|i| i % args.paths.max(1) == ROTATED)
        .map(|i| (cluster::namespace_of(BULK_PREFIX, i, namespaces), format!("vs-{i}")))
        .collect();
    let new_password = format!("{}-rotated", vault::password(ROTATED));
    let watches: Vec<_> = rotated
        .iter()
        .map(|(ns, name)| {
            tokio::spawn(value_seen(
                client.clone(),
                ns.clone(),
                name.clone(),
                new_password.clone(),
            ))
        })
        .collect();
    // Let the watches list the current Secrets before the value changes.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let versions_before = cluster::resource_versions(client, &bulk).await?;
    let usage_start = op.usage()?;
    let components_start = operator::component_cpu(&env.dir);
    let metrics_start = op.counters()?;
    vault::write(env, &cluster::bulk_path(ROTATED, args.paths), &new_password)?;
    let rotated_at = Instant::now();
    let audit_start = audit.mark()?;
    eprintln!(
        "bench[{n}]: rotated {} (read by {}); observing one refresh cycle of {:.0}s",
        cluster::bulk_path(ROTATED, args.paths),
        rotated.len(),
        window.as_secs_f64()
    );

    let api = cluster::vault_secrets(client, PROBE_NAMESPACE);
    let every = Duration::from_secs_f64(args.probe_every.max(0.1));
    let mut next_probe = rotated_at + every;
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let mut audit_interval = None;
    let end = rotated_at + window;
    while Instant::now() < end {
        if audit_interval.is_none() && rotated_at.elapsed() >= interval {
            audit_interval = Some(audit.mark()?);
        }
        if Instant::now() >= next_probe {
            let name = format!("cycle-{}", sent.len());
            let obj = cluster::vault_secret(&name, PROBE_NAMESPACE, PROBE_PATH, &args.interval, false)?;
            let at = Instant::now();
            api.create(&PostParams::default(), &obj).await?;
            sent.push((format!("{PROBE_NAMESPACE}/{name}"), at));
            next_probe += every;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit_end = audit.mark()?;
    let usage_end = op.usage()?;
    let components_end = operator::component_cpu(&env.dir);
    let metrics_end = op.counters()?;
    let versions_after = cluster::resource_versions(client, &bulk).await?;

    // The rotated value may take up to 1.1 intervals by design; wait a little past the window.
    let rotation_deadline = rotated_at + window.max(interval + Duration::from_secs(15));
    while Instant::now() < rotation_deadline && !watches.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = Vec::new();
    for watch in watches {
        if watch.is_finished() {
            seen.push(watch.await?);
        } else {
            watch.abort();
        }
    }
    let rotation_s = (seen.len() == rotated.len())
        .then(|| {
            seen.iter()
                .max()
                .map(|last| last.duration_since(rotated_at).as_secs_f64())
        })
        .flatten();

    let rotated_keys: BTreeSet<String> = rotated
        .iter()
        .flat_map(|(ns, name)| [format!("VaultSecret {ns}/{name}"), format!("Secret {ns}/{name}")])
        .collect();
    let split = |versions: &BTreeMap<String, String>, want: bool| -> BTreeMap<String, String> {
        versions
            .iter()
            .filter(|(k, _)| rotated_keys.contains(*k) == want)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (secret_writes_unchanged, status_writes_unchanged) =
        cluster::changed(&split(&versions_before, false), &split(&versions_after, false));
    let (secret_writes_rotated, status_writes_rotated) =
        cluster::changed(&split(&versions_before, true), &split(&versions_after, true));

    let vault_interval = audit.count(audit_start, audit_interval.unwrap_or(audit_end))?;
    let (bulk_reads, bulk_paths_read, bulk_paths_read_again) = vault_interval.reads_under("bench/p");
    let (probe_reads, _, _) = vault_interval.reads_under(PROBE_PATH);
    let probes = probe_latencies(tracker, &sent).await;
    let mut sorted = probes.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Cycle {
        interval_s: interval.as_secs_f64(),
        window_s: window.as_secs_f64(),
        vault_window: audit.count(audit_start, audit_end)?,
        vault_interval,
        bulk_reads,
        bulk_paths_read,
        bulk_paths_read_again,
        probe_reads,
        // One identity (the operator's token) for now.
        distinct_pairs: args.paths.min(n),
        probe_p50_s: percentile(&sorted, 0.50),
        probe_p99_s: percentile(&sorted, 0.99),
        probes,
        rotation_k: rotated.len(),
        rotation_updated: seen.len(),
        rotation_s,
        secret_writes_unchanged,
        status_writes_unchanged,
        secret_writes_rotated,
        status_writes_rotated,
        cpu_s: usage_end.cpu_seconds - usage_start.cpu_seconds,
        components_cpu_s: operator::counter_delta(&components_start, &components_end),
        metrics: operator::counter_delta(&metrics_start, &metrics_end),
    })
}

/// Watches Secret `ns/name` until its `password` is `want`; returns when the watch saw it.
async fn value_seen(client: Client, ns: String, name: String, want: String) -> Instant {
    let api: Api<Secret> = Api::namespaced(client, &ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).boxed();
    loop {
        match events.next().await {
            Some(Ok(Event::Apply(secret) | Event::InitApply(secret))) => {
                let password = secret.data.as_ref().and_then(|d| d.get("password"));
                if password.is_some_and(|p| p.0 == want.as_bytes()) {
                    return Instant::now();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => eprintln!("bench: watch of Secret {ns}/{name} (retrying): {err}"),
            // The watcher retries forever; an end would mean the client is gone.
            None => std::future::pending::<()>().await,
        }
    }
}
