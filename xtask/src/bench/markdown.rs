//! `docs/benchmarks.md`: one generated section per kind of run (sync, refresh cycle) between
//! markers; a run rewrites only its own section, so the other kind's figures and any prose written
//! by hand outside the markers stay.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::report;
use super::{Kind, SizeResult};

fn begin(kind: Kind) -> String {
    format!("<!-- bench:{} begin -->", kind.name())
}

fn end(kind: Kind) -> String {
    format!("<!-- bench:{} end -->", kind.name())
}

/// Replaces the section of `kind` in the file at `path` with `results` (the rows of that kind);
/// writes the whole file afresh when it has no sections yet.
pub fn update(path: &Path, kind: Kind, results: &[SizeResult]) -> Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let has_sections = [Kind::Sync, Kind::Refresh]
        .iter()
        .all(|&k| existing.contains(&begin(k)) && existing.contains(&end(k)));
    let base = if has_sections { existing } else { template() };
    let Some(md) = replace_section(&base, kind, &section(kind, results)) else {
        anyhow::bail!("{}: the {} markers are out of order", path.display(), kind.name());
    };
    std::fs::write(path, md)?;
    Ok(())
}

/// `base` with the text between the markers of `kind` replaced by `body`.
fn replace_section(base: &str, kind: Kind, body: &str) -> Option<String> {
    let from = base.find(&begin(kind))? + begin(kind).len();
    let to = base.find(&end(kind)).filter(|&to| to >= from)?;
    Some(format!("{}\n{body}{}", &base[..from], &base[to..]))
}

/// The generated part of a kind's section.
fn section(kind: Kind, results: &[SizeResult]) -> String {
    let mut md = String::new();
    let runs: BTreeSet<(&str, &str, &str)> = results
        .iter()
        .map(|r| (r.date.as_str(), r.command.as_str(), r.machine.as_str()))
        .collect();
    for (date, command, machine) in &runs {
        let _ = writeln!(md, "- {date}, {machine}: `{command}`");
    }
    if let Some(r) = results.first() {
        // Rows of different runs may differ in interval.
        let intervals: BTreeSet<&str> = results.iter().map(|r| r.interval.as_str()).collect();
        let intervals: Vec<&str> = intervals.into_iter().collect();
        let namespaces: BTreeSet<String> = results.iter().map(|r| r.namespaces.to_string()).collect();
        let namespaces: Vec<String> = namespaces.into_iter().collect();
        let _ = writeln!(
            md,
            "- Workload: N VaultSecrets over {} namespaces (column ns; `watched`: the operator ran with \
             `--watch-namespaces` naming them) reading {} distinct KV v2 paths, `refresh.interval: {}`; \
             Vault identities in column ids: 1 is the operator's own token for all, otherwise one \
             Kubernetes-auth identity per namespace (`--kubernetes-auth`); the probes in a namespace of their \
             own, with the operator's token.",
            namespaces.join(" or "),
            r.paths,
            intervals.join("` or `")
        );
    }
    let _ = writeln!(
        md,
        "- Raw figures: `target/vaultsync-bench/results-{}.json`.\n",
        kind.name()
    );
    if results.is_empty() {
        md.push_str("No run yet.\n\n");
        return md;
    }
    md.push_str(&report::table(kind, results));
    if kind == Kind::Sync {
        let _ = writeln!(md, "\nTime to all Ready:\n\n```text\n{}```", report::chart(results));
    }
    let _ = writeln!(
        md,
        "\nCPU of the environment, Vault requests and operator counters:\n\n```text\n{}```",
        report::notes(results)
    );
    md
}

/// The file before any run: the sections' places and the prose around them.
fn template() -> String {
    format!(
        "# Benchmarks\n\n\
         How long vaultsync takes to sync many VaultSecrets, and what it costs, on the local \
         environment (real etcd, kube-apiserver and OpenBao on loopback, everything on one machine). \
         The sections below are written by the benchmark; each kind of run rewrites only its own.\n\n\
         ```sh\n\
         cargo xtask bench --sizes 1000,5000,10000 --paths 300 --identities 4\n\
         cargo xtask bench --sizes 1000 --interval 60s\n\
         cargo xtask bench --sizes 10000 --interval 120s\n\
         ```\n\n\
         ## Sync: time to all Ready, then an idle window\n\n{}\n{}\n\n\
         ## Refresh cycle: one full cycle after all are Ready\n\n{}\n{}\n\n\
         ## What the columns mean\n\n{COLUMNS}\n\
         ## Limits of this benchmark\n\n{LIMITS}",
        begin(Kind::Sync),
        end(Kind::Sync),
        begin(Kind::Refresh),
        end(Kind::Refresh),
    )
}

const COLUMNS: &str = "\
Sync runs (`refresh.interval: 1h`):

- **baseline s**: a plain kube client doing the API-server writes of a first sync — one server-side \
apply of a Secret and one server-side apply of a VaultSecret status per object — for N objects, 32 \
at a time (the operator's default `--concurrency`), no Vault. Measured in the same run, before the \
operator starts.
- **operator s**: from the first create of the N VaultSecrets (32 creates at a time, by the \
benchmark) to the last one seen `Ready=True` by a watch. It includes the creates.
- **creates alone s**: the N VaultSecret creates by the benchmark with no operator running, in \
the same run (the operator column includes them).
- **floor s**: creates alone + baseline — the API-server work a first sync of N cannot avoid on \
this machine.
- **ratio to floor**: operator / floor, the headline figure (target: at most 1.10 at N=10,000).
- **ratio to baseline**: operator / baseline, the figure of earlier runs (it counts the creates \
against the operator).
- **probe p50/p99**: a new VaultSecret is applied every 2 s (`--probe-every`) while the N sync; \
time from its create to `Ready=True`.
- **RSS**: the operator's `VmHWM` (peak) and `VmRSS` (settled) at the end of the run — after the \
idle window, or after the refresh cycle — from `/proc/PID/status`.
- **CPU**: the operator's utime+stime from `/proc/PID/stat`, from its start to all Ready (sync), \
and over the idle window.
- **Vault**: requests in OpenBao's audit log, from the operator's start to all Ready (sync) and \
during the idle window: KV reads, logins, other. **distinct pairs**: the (identity, path) pairs the \
N read, the target for KV reads sync; the target for logins is ids.
- **writes idle**: Secrets and VaultSecrets whose resourceVersion changed during the idle window \
(expected: 0). `-`: no idle window in that run.
- **restart**: after the idle window the operator is killed and a new process started; seconds until \
its syncs count reaches N plus the probes (every VaultSecret re-checked), and the logins, KV reads and \
Secret + status writes meanwhile (expected: logins ≤ ids, reads ≤ distinct pairs, no writes), and \
the new process's highest RSS until then (it lists all N at once).

Refresh-cycle runs (`--interval` of at most 10 minutes; no idle window): once all N are Ready, the \
value of one path is changed and one cycle — the interval plus 15 % — is observed.

- **KV reads / cycle**: reads of the bulk paths in OpenBao's audit log during the first interval \
of the cycle (each refresh grid point falls in any interval-long window exactly once); the probes' \
reads of their own path are left out (see the notes).
- **distinct pairs**: distinct (identity, path) pairs the N read — the target for KV reads / cycle.
- **logins / other Vault / cycle**: the other requests in that interval (token renewals, lookups).
- **cycle probe p50/p99**: a new VaultSecret (on a path of its own) is applied every 2 s during the \
cycle; time from its create to `Ready=True` (target: p99 under 1 s while the others refresh).
- **rotation K / s**: K = N / paths VaultSecrets read the path changed at the start of the cycle; \
seconds from that change until a watch has seen the new value in all K Secrets (target: at most \
the interval plus 10 s). `- (k of K)`: only k had it by the end of the cycle (or of the interval plus \
15 s, if later).
- **writes unchanged**: Secrets and VaultSecrets (status) of the N − K whose path did not change, \
whose resourceVersion changed during the cycle (expected: 0).
- **CPU cycle**: the operator's CPU seconds over the cycle.
";

const LIMITS: &str = "\
- Without `--kubernetes-auth` every VaultSecret uses the operator's own token \
(`VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES=*`): one identity, no logins, distinct pairs = paths. With \
it, each namespace logs in as its own ServiceAccount (TokenRequest, OpenBao's TokenReview), all \
reading the same paths under one policy.
- The baseline does the operator's two writes per object; the operator column also includes the \
benchmark's own N creates on the same API server (see `creates alone s`, and `floor s`).
- Everything shares the machine's CPUs: the API server, etcd, OpenBao, the operator and the \
benchmark client. Repeated runs differ noticeably (the baseline at N=1,000 took 3.3 s, 4.5 s and \
6.9 s in three runs); compare figures from the same run.
- Probes are few at small N (one every 2 s), so p99 there is close to the maximum.
- Refresh runs observe the first cycle after the sync, not a steady state: a VaultSecret that \
synced less than a tenth of the interval before its grid point skips to the next one, so a few \
paths may be read first after the observed interval (KV reads / cycle a little under distinct \
pairs). An interval shorter than the sync (about 90 s at N=10,000 here) makes refreshes overlap \
it, hence `--interval 120s` at 10,000.
- Rows of a section may come from different runs (a run replaces only the sizes it measured); \
each run is listed with its date.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_rewrites_only_its_own_section_and_keeps_the_prose_around_it() {
        let base = template().replace(
            "## What the columns mean",
            "Written by hand.\n\n## What the columns mean",
        );
        let once = replace_section(&base, Kind::Refresh, "refresh rows\n").unwrap();
        let twice = replace_section(&once, Kind::Sync, "sync rows\n").unwrap();
        let again = replace_section(&twice, Kind::Refresh, "new refresh rows\n").unwrap();
        assert!(again.contains("sync rows\n<!-- bench:sync end -->"));
        assert!(again.contains("\nnew refresh rows\n<!-- bench:refresh end -->"));
        assert!(!again.contains("\nrefresh rows"));
        assert!(again.contains("Written by hand."));
    }
}
