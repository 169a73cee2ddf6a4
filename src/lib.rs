//! vaultsync: a Kubernetes operator that keeps Secrets in sync with HashiCorp Vault and OpenBao.

pub mod api;
pub mod backoff;
pub mod cli;
pub mod controller;
pub mod crashpoint;
pub mod events;
pub mod hash;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod reasons;
pub mod rollout;
pub mod template;
pub mod vault;

/// Field manager for every write, and the value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "vaultsync";

/// Label that marks Secrets written by vaultsync (the controller watches only those).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Annotation on a written Secret: keyed hash of everything vaultsync applied to it.
pub const APPLIED_HASH_ANNOTATION: &str = "vaultsync.dev/applied-hash";

/// Annotation on a VaultSecret: each new value makes the next reconcile read Vault at once.
pub const SYNC_REQUESTED_ANNOTATION: &str = "vaultsync.dev/sync-requested";

/// A Kubernetes API error in words for conditions, Events and logs: the API server's message,
/// HTTP code and reason, never kube's `Debug` dump of the whole `Status`.
pub fn kube_error_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) if s.reason.is_empty() => format!("{} (HTTP {})", s.message, s.code),
        kube::Error::Api(s) => format!("{} (HTTP {}, {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubernetes_api_errors_read_as_the_api_servers_message() {
        let status =
            kube::core::Status::failure("secrets \"db\" is forbidden: User cannot get", "Forbidden").with_code(403);
        let message = super::kube_error_message(&kube::Error::Api(Box::new(status)));
        assert_eq!(
            message,
            r#"secrets "db" is forbidden: User cannot get (HTTP 403, Forbidden)"#
        );
        assert!(!message.contains("Status {"), "{message}");
    }
}
