//! The options of `cargo xtask bench`, and the kind of run they make.

use std::time::Duration;

use anyhow::Result;

/// Intervals up to this long get a refresh-cycle phase instead of the idle window.
const CYCLE_MAX_INTERVAL: Duration = Duration::from_secs(600);

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Numbers of VaultSecrets, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub sizes: Vec<usize>,
    /// Distinct KV paths the VaultSecrets read.
    #[arg(long, default_value_t = 300)]
    pub paths: usize,
    /// Namespaces the VaultSecrets are spread over; with `--kubernetes-auth`, one Vault identity
    /// each.
    #[arg(long, default_value_t = 4)]
    pub identities: usize,
    /// Give each namespace its own Kubernetes-auth identity (a ServiceAccount and an OpenBao role)
    /// instead of the operator's own token: logins are then measured, and distinct pairs are
    /// (namespace, path) pairs.
    #[arg(long)]
    pub kubernetes_auth: bool,
    /// Start the operator with `--watch-namespaces` naming the benchmark's namespaces (one watch
    /// each) instead of watching all namespaces.
    #[arg(long)]
    pub watch_namespaces: bool,
    /// Length of the idle window after everything is Ready, seconds (no idle window when a
    /// refresh cycle is observed).
    #[arg(long, default_value_t = 60)]
    pub idle: u64,
    /// Seconds between first-sync latency probes during the bulk sync and the refresh cycle.
    #[arg(long, default_value_t = 2.0)]
    pub probe_every: f64,
    /// `spec.refresh.interval` of the VaultSecrets (Go duration, at least 10s). At most 10m: one
    /// refresh cycle (the interval plus 15 %) is observed after all are Ready, instead of the
    /// idle window.
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    pub interval: String,
    /// Profile the operator's heap with heaptrack (its preload library in the operator's
    /// process, so the figures from `/proc` stay its own, inflated by the profiler). Writes
    /// `target/vaultsync-bench/heaptrack-N.gz` for `heaptrack_print`, and no results. Build with
    /// `CARGO_PROFILE_RELEASE_DEBUG=line-tables-only` for source lines.
    #[arg(long)]
    pub heaptrack: bool,
    /// Run the operator binary of the container image (`cargo xtask image`: static musl,
    /// stripped) instead of the host's glibc release build. Writes `results-KIND-image.json` and
    /// prints the table; `docs/benchmarks.md` is left alone (its image figures are written by hand
    /// beside the generated sections).
    #[arg(long)]
    pub image: bool,
}

/// Which kind of run: the sync (hourly refresh, idle window after) or the refresh cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sync,
    Refresh,
}

impl Kind {
    pub fn of(interval: Duration) -> Kind {
        if interval <= CYCLE_MAX_INTERVAL {
            Kind::Refresh
        } else {
            Kind::Sync
        }
    }

    /// The name used in file names and Markdown markers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Refresh => "refresh",
        }
    }
}

/// `--interval` as a duration.
pub fn interval(args: &BenchArgs) -> Result<Duration> {
    parse_duration(&args.interval).map_err(anyhow::Error::msg)
}

fn parse_interval(text: &str) -> Result<String, String> {
    let interval = parse_duration(text)?;
    if interval < Duration::from_secs(10) {
        return Err(format!("{text}: refresh.interval must be at least 10s"));
    }
    Ok(text.to_owned())
}

/// A Go duration as the CRD accepts it (`90s`, `2m`, `1h30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("{text}: expected a duration such as 60s, 2m or 1h");
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        let value: f64 = rest[..digits].parse().map_err(|_| err())?;
        let tail = &rest[digits..];
        let unit = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        total += value
            * match &tail[..unit] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(err()),
            };
        rest = &tail[unit..];
    }
    if text.is_empty() {
        return Err(err());
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

pub fn command_line(args: &BenchArgs) -> String {
    let sizes: Vec<String> = args.sizes.iter().map(ToString::to_string).collect();
    let mut line = format!(
        "cargo xtask bench --sizes {} --paths {} --identities {}",
        sizes.join(","),
        args.paths,
        args.identities
    );
    if args.interval != "1h" {
        line.push_str(&format!(" --interval {}", args.interval));
    }
    if args.kubernetes_auth {
        line.push_str(" --kubernetes-auth");
    }
    if args.watch_namespaces {
        line.push_str(" --watch-namespaces");
    }
    if args.image {
        line.push_str(" --image");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_the_crd_writes_them() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("60").is_err());
        assert!(parse_interval("5s").is_err());
    }

    #[test]
    fn short_intervals_make_a_refresh_run() {
        assert_eq!(Kind::of(Duration::from_secs(600)), Kind::Refresh);
        assert_eq!(Kind::of(Duration::from_secs(3600)), Kind::Sync);
    }
}
