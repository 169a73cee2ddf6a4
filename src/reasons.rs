//! Every reason vaultsync reports, in one table: the `Ready` condition's reasons (with how a sync
//! failing with each is retried), the `RolloutRestart` condition's, and those only Events carry.
//! The same constant is the condition reason, the Event reason and the `reason` label of
//! `vaultsync_syncs_total`; a test holds `docs/api.md`'s tables to these lists.

/// How a sync that failed with a reason is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Not a failure: the next sync is at the next refresh.
    AtRefresh,
    /// Exponential backoff with jitter (`--retry-base` doubling up to `--retry-max`).
    Backoff,
    /// Backoff, but soon enough to renew a lease before it expires.
    BeforeExpiry,
    /// Only a change can fix it: retried at `--retry-max`, and at once when the VaultSecret (or
    /// what it refers to) changes.
    Slowly,
}

impl Retry {
    /// The words `docs/api.md` uses for it.
    pub fn doc(self) -> &'static str {
        match self {
            Retry::AtRefresh => "at the next refresh",
            Retry::Backoff => "with backoff",
            Retry::BeforeExpiry => "with backoff, before the expiry",
            Retry::Slowly => "slowly",
        }
    }
}

/// A reason of the `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub name: &'static str,
    pub retry: Retry,
}

const fn ready(name: &'static str, retry: Retry) -> Ready {
    Ready { name, retry }
}

use Retry::{AtRefresh, Backoff, BeforeExpiry, Slowly};

pub const SYNCED: Ready = ready("Synced", AtRefresh);
pub const VAULT_UNAVAILABLE: Ready = ready("VaultUnavailable", Backoff);
pub const PERMISSION_DENIED: Ready = ready("PermissionDenied", Backoff);
pub const NOT_FOUND: Ready = ready("NotFound", Backoff);
pub const RATE_LIMITED: Ready = ready("RateLimited", Backoff);
pub const VAULT_REJECTED: Ready = ready("VaultRejected", Backoff);
pub const INVALID_RESPONSE: Ready = ready("InvalidResponse", Backoff);
pub const INVALID_VAULT_CONFIG: Ready = ready("InvalidVaultConfig", Slowly);
pub const KEY_NOT_FOUND: Ready = ready("KeyNotFound", Backoff);
pub const INVALID_KEY: Ready = ready("InvalidKey", Slowly);
pub const INVALID_VALUE: Ready = ready("InvalidValue", Slowly);
pub const TEMPLATE_ERROR: Ready = ready("TemplateError", Slowly);
pub const TEMPLATES_DISABLED: Ready = ready("TemplatesDisabled", Slowly);
pub const SECRET_TOO_LARGE: Ready = ready("SecretTooLarge", Slowly);
pub const SECRET_NOT_OWNED: Ready = ready("SecretNotOwned", Backoff);
pub const CA_SECRET_INVALID: Ready = ready("CASecretInvalid", Backoff);
pub const SERVICE_ACCOUNT_NOT_FOUND: Ready = ready("ServiceAccountNotFound", Backoff);
pub const CREDENTIAL_SECRET_INVALID: Ready = ready("CredentialSecretInvalid", Backoff);
pub const LOGIN_FAILED: Ready = ready("LoginFailed", Backoff);
pub const INVALID_SPEC: Ready = ready("InvalidSpec", Slowly);
pub const NO_VAULT_IDENTITY: Ready = ready("NoVaultIdentity", Slowly);
pub const STALE: Ready = ready("Stale", BeforeExpiry);
pub const VAULT_ADDRESS_NOT_ALLOWED: Ready = ready("VaultAddressNotAllowed", Slowly);
pub const AUDIENCE_NOT_ALLOWED: Ready = ready("AudienceNotAllowed", Slowly);
pub const TOKEN_LIFETIME_NOT_ALLOWED: Ready = ready("TokenLifetimeNotAllowed", Slowly);
pub const OPERATOR_IDENTITY_NOT_ALLOWED: Ready = ready("OperatorIdentityNotAllowed", Slowly);
pub const RESERVED_PATH: Ready = ready("ReservedPath", Slowly);
pub const DESTINATION_NOT_ALLOWED: Ready = ready("DestinationNotAllowed", Slowly);
pub const KUBERNETES_ERROR: Ready = ready("KubernetesError", Backoff);

/// Every `Ready` reason, in the order of `docs/api.md`.
pub const READY: &[Ready] = &[
    SYNCED,
    VAULT_UNAVAILABLE,
    PERMISSION_DENIED,
    NOT_FOUND,
    RATE_LIMITED,
    VAULT_REJECTED,
    INVALID_RESPONSE,
    KEY_NOT_FOUND,
    INVALID_KEY,
    INVALID_VALUE,
    TEMPLATE_ERROR,
    TEMPLATES_DISABLED,
    SECRET_TOO_LARGE,
    SECRET_NOT_OWNED,
    CA_SECRET_INVALID,
    SERVICE_ACCOUNT_NOT_FOUND,
    CREDENTIAL_SECRET_INVALID,
    LOGIN_FAILED,
    INVALID_SPEC,
    INVALID_VAULT_CONFIG,
    NO_VAULT_IDENTITY,
    STALE,
    VAULT_ADDRESS_NOT_ALLOWED,
    AUDIENCE_NOT_ALLOWED,
    TOKEN_LIFETIME_NOT_ALLOWED,
    OPERATOR_IDENTITY_NOT_ALLOWED,
    RESERVED_PATH,
    DESTINATION_NOT_ALLOWED,
    KUBERNETES_ERROR,
];

/// Reasons of the `RolloutRestart` condition (`spec.rollout`).
pub mod rollout {
    pub const RESTARTED: &str = "Restarted";
    pub const UP_TO_DATE: &str = "UpToDate";
    pub const NO_WORKLOADS: &str = "NoWorkloads";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const WORKLOAD_PAUSED: &str = "WorkloadPaused";
    pub const KIND_NOT_SERVED: &str = "RolloutKindNotServed";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const KUBERNETES_ERROR: &str = super::KUBERNETES_ERROR.name;

    /// Every reason, in the order of `docs/api.md`.
    pub const ALL: &[&str] = &[
        RESTARTED,
        UP_TO_DATE,
        NO_WORKLOADS,
        TARGET_NOT_FOUND,
        WORKLOAD_PAUSED,
        KIND_NOT_SERVED,
        FORBIDDEN,
        KUBERNETES_ERROR,
    ];
}

/// Reasons only Events carry (a failing sync's Warning carries its `Ready` reason).
pub mod event {
    pub const SECRET_WRITTEN: &str = "SecretWritten";
    pub const SECRET_ADOPTED: &str = "SecretAdopted";
    /// Keys a shell cannot expand, though envFrom passes them (was `KeysSkippedByEnvFrom`).
    pub const KEYS_NOT_SHELL_NAMES: &str = "KeysNotShellNames";
    pub const TOKEN_EXPIRES_BEFORE_LEASE: &str = "TokenExpiresBeforeLease";
    pub const LEASES_REVOKED: &str = "LeasesRevoked";
    /// A deleted VaultSecret's leases cannot be revoked (Vault refused); left to expire.
    pub const LEASES_NOT_REVOKED: &str = "LeasesNotRevoked";
    /// Vault did not answer when a VaultSecret was deleted: its leases are owed revocations.
    pub const LEASES_REVOCATION_DEFERRED: &str = "LeasesRevocationDeferred";
    /// On a workload restarted for `spec.rollout`.
    pub const ROLLOUT_RESTART_TRIGGERED: &str = "RolloutRestartTriggered";
    /// On the VaultSecret when a restart fails (with the `RolloutRestart` reason in the message).
    pub const ROLLOUT_RESTART: &str = "RolloutRestart";

    /// Every Event-only reason, as `docs/api.md` names them.
    pub const ALL: &[&str] = &[
        SECRET_WRITTEN,
        SECRET_ADOPTED,
        KEYS_NOT_SHELL_NAMES,
        ROLLOUT_RESTART_TRIGGERED,
        ROLLOUT_RESTART,
        LEASES_REVOKED,
        LEASES_NOT_REVOKED,
        LEASES_REVOCATION_DEFERRED,
        TOKEN_EXPIRES_BEFORE_LEASE,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    const API_MD: &str = include_str!("../docs/api.md");

    /// Rows `| a | b | ... |` of the table under `heading` in `docs/api.md`, cells trimmed of
    /// spaces and backticks.
    fn table(heading: &str) -> Vec<Vec<String>> {
        let start = API_MD
            .find(heading)
            .unwrap_or_else(|| panic!("{heading} missing from docs/api.md"));
        API_MD[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn docs_ready_reasons_are_the_table_with_its_retry_classes() {
        let documented: Vec<(String, String)> = table("### `Ready` reasons")
            .into_iter()
            .map(|row| (row[0].clone(), row[2].clone()))
            .collect();
        let code: Vec<(String, String)> = READY.iter().map(|r| (r.name.into(), r.retry.doc().into())).collect();
        assert_eq!(
            documented, code,
            "docs/api.md's Ready reasons (reason, retried) differ from src/reasons.rs"
        );
    }

    #[test]
    fn docs_rollout_reasons_are_the_table() {
        let documented: Vec<String> = table("| `RolloutRestart` | reason | meaning |")
            .into_iter()
            .map(|row| row[1].clone())
            .collect();
        assert_eq!(documented, rollout::ALL);
    }

    #[test]
    fn docs_name_every_event_reason() {
        let events = &API_MD[API_MD
            .find("Events (`kubectl describe vsec NAME`)")
            .expect("Events paragraph")..];
        for reason in event::ALL {
            assert!(
                events.contains(&format!("`{reason}`")),
                "docs/api.md's Events paragraph lacks {reason}"
            );
        }
    }
}
