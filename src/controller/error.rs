//! Errors of one sync, each with a static reason for conditions, Events and metrics.

use super::trust::Refusal;
use crate::reasons::{self, Retry};
use crate::vault;

/// Result of a sync step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a VaultSecret could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is valid for the schema but cannot be acted on.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// No Vault identity is available for this VaultSecret.
    #[error("{0}")]
    NoIdentity(String),
    /// The ServiceAccount named in `spec.auth.kubernetes` does not exist.
    #[error("{0}")]
    ServiceAccountNotFound(String),
    /// A credential Secret (AppRole secret ID, token) is missing or lacks the key.
    #[error("{0}")]
    CredentialSecret(String),
    /// The CA Secret named in `spec.vault.caSecretRef` is missing or lacks the key.
    #[error("{0}")]
    CaSecret(String),
    /// A Vault request failed.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// A key listed in a source's `keys` is absent from the secret.
    #[error("key {key:?} not found in source {source_name}")]
    KeyNotFound { source_name: String, key: String },
    /// The merged data has keys a Secret cannot hold.
    #[error("{0}")]
    InvalidKey(String),
    /// A source value cannot be used as asked (e.g. `decodeBase64` on a value that is not base64).
    #[error("{0}")]
    InvalidValue(String),
    /// A template of `spec.destination.templates` could not be rendered.
    #[error(transparent)]
    Template(#[from] crate::template::Error),
    /// The VaultSecret has templates and the operator does not render them.
    #[error(
        "spec.destination.templates is set but this operator does not render templates (its administrator set --allow-templates=false)"
    )]
    TemplatesDisabled,
    /// The Secret would be larger than the API server accepts.
    #[error("{0}")]
    SecretTooLarge(String),
    /// The destination Secret exists and belongs to someone else.
    #[error("{0}")]
    SecretNotOwned(String),
    /// Vault could not renew a lease that is still valid: the Secret keeps its credentials.
    #[error(
        "{cause}; the lease of source {source_name} could not be renewed, the Secret keeps its credentials, valid until {expiry}"
    )]
    Stale {
        source_name: String,
        expiry: jiff::Timestamp,
        cause: vault::Error,
    },
    /// Leases of a deleted VaultSecret could not be revoked (yet).
    #[error("{0}")]
    LeasesNotRevoked(String),
    /// The administrator's trust boundary refuses what the spec asks for (see [`Refusal`]).
    #[error("{message}")]
    NotAllowed { refusal: Refusal, message: String },
    /// The watch cache's copy of the VaultSecret could not be decoded (never expected).
    #[error(transparent)]
    Cache(#[from] super::packed::PackError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error during {action}: {}", crate::kube_error_message(.source))]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Static reason, used for condition reasons, Event reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        self.entry().name
    }

    /// How a sync that failed with this is retried.
    pub fn retry(&self) -> Retry {
        self.entry().retry
    }

    /// The error's row of the reasons table.
    fn entry(&self) -> reasons::Ready {
        match self {
            Error::InvalidSpec(_) => reasons::INVALID_SPEC,
            Error::NoIdentity(_) => reasons::NO_VAULT_IDENTITY,
            Error::ServiceAccountNotFound(_) => reasons::SERVICE_ACCOUNT_NOT_FOUND,
            Error::CredentialSecret(_) => reasons::CREDENTIAL_SECRET_INVALID,
            Error::CaSecret(_) => reasons::CA_SECRET_INVALID,
            Error::Vault(e) => e.entry(),
            Error::KeyNotFound { .. } => reasons::KEY_NOT_FOUND,
            Error::InvalidKey(_) => reasons::INVALID_KEY,
            Error::InvalidValue(_) => reasons::INVALID_VALUE,
            Error::Template(_) => reasons::TEMPLATE_ERROR,
            Error::TemplatesDisabled => reasons::TEMPLATES_DISABLED,
            Error::SecretTooLarge(_) => reasons::SECRET_TOO_LARGE,
            Error::SecretNotOwned(_) => reasons::SECRET_NOT_OWNED,
            Error::Stale { .. } => reasons::STALE,
            // Only logged and sent as an Event: a deleted VaultSecret has no condition to show.
            Error::LeasesNotRevoked(_) => reasons::Ready {
                name: reasons::event::LEASES_NOT_REVOKED,
                retry: Retry::Backoff,
            },
            Error::NotAllowed { refusal, .. } => refusal.entry(),
            Error::Kube { .. } => reasons::KUBERNETES_ERROR,
            // Only logged: the reconcile stops before it could report anything.
            Error::Cache(_) => reasons::Ready {
                name: "CacheError",
                retry: Retry::Backoff,
            },
        }
    }

    /// Wraps a kube error with the action that failed.
    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }
}
