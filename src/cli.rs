//! Command line of the `vaultsync` binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::api::parse_duration;
use crate::controller::{Backoff, Settings};
use crate::vault::parse_address;

/// Keeps Kubernetes Secrets in sync with HashiCorp Vault and OpenBao.
#[derive(Parser, Debug)]
#[command(name = "vaultsync", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the VaultSecret CustomResourceDefinition as YAML.
    Crd,
    /// Render templates: one request on stdin, the answer on stdout. Run by `vaultsync run`
    /// itself, under memory and CPU limits; not for people.
    #[command(hide = true)]
    RenderTemplates,
}

/// Flags of `vaultsync run`. Every flag has an environment variable; none is read implicitly
/// from `VAULT_*` (so a stray `VAULT_TOKEN` in the operator's environment is never used).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Default Vault/OpenBao address for VaultSecrets without `spec.vault.address`.
    #[arg(long, env = "VAULTSYNC_VAULT_ADDRESS")]
    pub vault_address: Option<String>,
    /// PEM CA bundle for the default Vault address.
    #[arg(long, env = "VAULTSYNC_VAULT_CA_FILE")]
    pub vault_ca_file: Option<PathBuf>,
    /// File holding the operator's Vault token (mount it from a Secret).
    #[arg(long, env = "VAULTSYNC_VAULT_TOKEN_FILE", conflicts_with = "vault_token")]
    pub vault_token_file: Option<PathBuf>,
    /// The operator's Vault token (prefer --vault-token-file; the value is never printed).
    #[arg(long, env = "VAULTSYNC_VAULT_TOKEN", hide_env_values = true)]
    pub vault_token: Option<String>,
    /// Namespaces (comma-separated) whose VaultSecrets may use the operator's own token when they
    /// have no `spec.auth`; `*` allows all. Default: none — every VaultSecret brings its own identity.
    #[arg(long, env = "VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES", value_delimiter = ',')]
    pub default_identity_namespaces: Vec<String>,
    /// Of the namespaces in --default-identity-namespaces, those (comma-separated; `*` for all)
    /// whose VaultSecrets may also issue `dynamic` and `pki` sources with the operator's token.
    /// Default: none — the operator's token reads `kv` sources only.
    #[arg(long, env = "VAULTSYNC_DEFAULT_IDENTITY_LEASES_NAMESPACES", value_delimiter = ',')]
    pub default_identity_leases_namespaces: Vec<String>,
    /// Vault/OpenBao addresses (comma-separated) that `spec.vault.address` may name besides
    /// --vault-address. Credentials, and requests at all, go to no other address.
    #[arg(long, env = "VAULTSYNC_ALLOWED_VAULT_ADDRESSES", value_delimiter = ',')]
    pub allowed_vault_addresses: Vec<String>,
    /// Audiences (comma-separated) that `spec.auth.kubernetes.audiences` may request. A token the
    /// Kubernetes API server accepts is never sent anywhere, whatever this allows.
    #[arg(
        long,
        env = "VAULTSYNC_ALLOWED_TOKEN_AUDIENCES",
        value_delimiter = ',',
        default_value = "vault"
    )]
    pub allowed_token_audiences: Vec<String>,
    /// Longest lifetime of a ServiceAccount token requested for a login
    /// (`spec.auth.kubernetes.tokenExpirationSeconds`); 10m to 24h.
    #[arg(long, env = "VAULTSYNC_MAX_TOKEN_EXPIRATION", default_value = "10m", value_parser = duration)]
    pub max_token_expiration: Duration,
    /// Timeout of one Vault request.
    #[arg(long, env = "VAULTSYNC_VAULT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub vault_timeout: Duration,
    /// Retry delay after the first failed sync; doubles on each further failure.
    #[arg(long, env = "VAULTSYNC_RETRY_BASE", default_value = "2s", value_parser = duration)]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "VAULTSYNC_RETRY_MAX", default_value = "5m", value_parser = duration)]
    pub retry_max: Duration,
    /// Most VaultSecrets synced at once.
    #[arg(long, env = "VAULTSYNC_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Namespace the operator runs in.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vaultsync-system")]
    pub namespace: String,
    /// Secret (in --namespace) holding the key of `status.secretHash`; created when missing.
    #[arg(long, env = "VAULTSYNC_HASH_KEY_SECRET", default_value = "vaultsync-hash-key")]
    pub hash_key_secret: String,
    /// How long a workload restart waits for further Secret changes, so that changes reaching
    /// one workload together restart it once (`spec.rollout.debounce` overrides it).
    #[arg(long, env = "VAULTSYNC_ROLLOUT_DEBOUNCE", default_value = "5s", value_parser = duration)]
    pub rollout_debounce: Duration,
    /// Render `spec.destination.templates`, each VaultSecret's in a child process with memory,
    /// CPU and time limits. `--allow-templates=false` refuses VaultSecrets that have templates.
    #[arg(long, env = "VAULTSYNC_ALLOW_TEMPLATES", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_templates: bool,
    /// Refresh interval of VaultSecrets that set no `spec.refresh.interval`.
    #[arg(long, env = "VAULTSYNC_DEFAULT_REFRESH_INTERVAL", default_value = "1h", value_parser = duration)]
    pub default_refresh_interval: Duration,
    /// Reconcile only VaultSecrets in these namespaces (comma-separated), with one watch per
    /// namespace; all namespaces (one cluster-wide watch) when empty.
    #[arg(long, env = "VAULTSYNC_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Instance name reported on Events.
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Where the operator serves `/metrics`, `/healthz`, `/readyz`, and how it logs.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the HTTP endpoints.
    #[arg(long, env = "VAULTSYNC_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "VAULTSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Elect a leader among replicas with a Lease in --namespace (`--leader-election=false` to run alone).
    #[arg(long, env = "VAULTSYNC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "VAULTSYNC_LEADER_ELECTION_LEASE", default_value = "vaultsync-leader")]
    pub leader_election_lease: String,
    /// How long a leader's Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "VAULTSYNC_LEADER_ELECTION_DURATION", default_value = "15s", value_parser = duration)]
    pub leader_election_duration: Duration,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A namespace name (RFC 1123 label); empty entries of the list are ignored.
fn is_dns_label(name: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    bytes.is_empty()
        || (bytes.len() <= 63
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum))
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

impl RunArgs {
    /// The flags as `vaultsync run` has them when none is given (environment variables aside).
    #[cfg(test)]
    pub(crate) fn defaults() -> RunArgs {
        match Cli::parse_from(["vaultsync", "run"]).command {
            Command::Run(args) => *args,
            _ => unreachable!("parsed `run`"),
        }
    }

    /// Checks every flag and splits them into controller settings and serving options.
    pub fn into_settings(self) -> anyhow::Result<(Settings, ServeArgs)> {
        let RunArgs {
            vault_address,
            vault_ca_file,
            vault_token_file,
            vault_token,
            default_identity_namespaces,
            default_identity_leases_namespaces,
            allowed_vault_addresses,
            allowed_token_audiences,
            max_token_expiration,
            vault_timeout,
            retry_base,
            retry_max,
            concurrency,
            namespace,
            hash_key_secret,
            instance,
            rollout_debounce,
            default_refresh_interval,
            watch_namespaces,
            allow_templates,
            serve,
        } = self;
        let vault_address = vault_address
            .as_deref()
            .map(parse_address)
            .transpose()
            .context("--vault-address")?;
        let allowed_vault_addresses = allowed_vault_addresses
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| parse_address(a))
            .collect::<Result<Vec<_>, _>>()
            .context("--allowed-vault-addresses")?;
        let allowed_token_audiences: Vec<String> =
            allowed_token_audiences.into_iter().filter(|a| !a.is_empty()).collect();
        anyhow::ensure!(
            (Duration::from_secs(600)..=Duration::from_secs(86400)).contains(&max_token_expiration),
            "--max-token-expiration must be between 10m (the API server's minimum) and 24h"
        );
        let vault_ca_pem = match vault_ca_file {
            Some(path) => {
                let pem = std::fs::read(&path).with_context(|| format!("--vault-ca-file {}", path.display()))?;
                Some(Arc::from(pem))
            }
            None => None,
        };
        let vault_token = match vault_token_file {
            Some(path) => {
                let token =
                    std::fs::read_to_string(&path).with_context(|| format!("--vault-token-file {}", path.display()))?;
                Some(token.trim().to_owned())
            }
            None => vault_token,
        };
        anyhow::ensure!(retry_base <= retry_max, "--retry-base must not exceed --retry-max");
        anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
        if let Some(bad) = watch_namespaces.iter().find(|n| !is_dns_label(n)) {
            anyhow::bail!("--watch-namespaces: {bad:?} is not a namespace name");
        }
        anyhow::ensure!(
            default_refresh_interval >= Duration::from_secs(10),
            "--default-refresh-interval must be at least 10s"
        );
        anyhow::ensure!(
            rollout_debounce <= Duration::from_secs(600),
            "--rollout-debounce must be at most 10m"
        );
        let settings = Settings {
            vault_address,
            vault_ca_pem,
            vault_token: vault_token.filter(|t| !t.is_empty()),
            default_identity_namespaces,
            default_identity_leases_namespaces: default_identity_leases_namespaces
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
            allowed_vault_addresses,
            allowed_token_audiences,
            max_token_expiration,
            vault_timeout,
            backoff: Backoff {
                base: retry_base,
                max: retry_max,
            },
            concurrency,
            namespace,
            hash_key_secret,
            instance,
            rollout_debounce,
            default_refresh: default_refresh_interval,
            allow_templates,
            watch_namespaces: {
                let mut namespaces: Vec<String> = watch_namespaces.into_iter().filter(|n| !n.is_empty()).collect();
                namespaces.sort();
                namespaces.dedup();
                namespaces
            },
        };
        Ok((settings, serve))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<(Settings, ServeArgs)> {
        let cli = Cli::try_parse_from([&["vaultsync", "run"], args].concat())?;
        match cli.command {
            Command::Run(args) => args.into_settings(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_safe_and_flags_are_checked() {
        let (settings, serve) = parse(&[]).unwrap();
        assert!(
            settings.default_identity_namespaces.is_empty(),
            "the operator's own identity is off by default"
        );
        assert!(settings.watch_namespaces.is_empty(), "all namespaces by default");
        assert!(settings.default_identity_leases_namespaces.is_empty(), "kv only");
        assert!(settings.allowed_vault_addresses.is_empty(), "only --vault-address");
        assert_eq!(settings.allowed_token_audiences, ["vault"]);
        assert_eq!(settings.max_token_expiration, Duration::from_secs(600));
        assert!(settings.allow_templates, "templates render, in an isolated process");
        assert_eq!(settings.default_refresh, Duration::from_secs(3600));
        assert!(serve.leader_election);
        let (settings, serve) = parse(&[
            "--watch-namespaces",
            "team-b,team-a,,team-b",
            "--default-refresh-interval",
            "15m",
            "--leader-election=false",
            "--allow-templates=false",
        ])
        .unwrap();
        assert_eq!(
            settings.watch_namespaces,
            ["team-a", "team-b"],
            "sorted, without repeats"
        );
        assert_eq!(settings.default_refresh, Duration::from_secs(900));
        assert!(!serve.leader_election);
        assert!(!settings.allow_templates, "an administrator can still forbid templates");
        assert!(
            parse(&["--watch-namespaces", "a,Team_B"]).is_err(),
            "not a namespace name"
        );
        assert!(parse(&["--default-refresh-interval", "1s"]).is_err());
        assert!(parse(&["--vault-address", "vault:8200"]).is_err());
        assert!(parse(&["--retry-base", "10m", "--retry-max", "1m"]).is_err());
        assert!(parse(&["--allowed-vault-addresses", "https://a:8200,vault:8200"]).is_err());
        assert!(parse(&["--max-token-expiration", "48h"]).is_err());
        let (settings, _) = parse(&[
            "--allowed-vault-addresses",
            "https://a:8200,https://b",
            "--allowed-token-audiences",
            "vault,bao",
        ])
        .unwrap();
        assert_eq!(settings.allowed_vault_addresses.len(), 2);
        assert_eq!(settings.allowed_token_audiences, ["vault", "bao"]);
    }
}
