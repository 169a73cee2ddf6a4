//! Whether a pod template uses a Secret in a way that needs a restart to see new content.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

/// Whether `spec` reads Secret `secret` through `envFrom[].secretRef`,
/// `env[].valueFrom.secretKeyRef` (in containers or init containers), a `secret` volume or a
/// `projected` volume's `secret` source. `imagePullSecrets` do not count: pulls read them anew.
pub fn uses_secret(spec: &PodSpec, secret: &str) -> bool {
    let mut containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    containers.any(|c| container_uses(c, secret)) || spec.volumes.iter().flatten().any(|v| volume_uses(v, secret))
}

fn container_uses(c: &Container, secret: &str) -> bool {
    let env_from = c.env_from.iter().flatten();
    let from_env_from = env_from.filter_map(|e| e.secret_ref.as_ref()).any(|r| r.name == secret);
    let env = c.env.iter().flatten();
    let from_env = env
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .any(|r| r.name == secret);
    from_env_from || from_env
}

fn volume_uses(v: &Volume, secret: &str) -> bool {
    let direct = v
        .secret
        .as_ref()
        .is_some_and(|s| s.secret_name.as_deref() == Some(secret));
    let projected = v
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .into_iter()
        .flatten();
    direct || projected.filter_map(|s| s.secret.as_ref()).any(|s| s.name == secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value, json};

    use super::*;

    fn pod(spec: Value) -> PodSpec {
        serde_json::from_value(spec).expect("valid PodSpec")
    }

    fn app(container: Value) -> PodSpec {
        let mut c = json!({"name": "app"});
        c.as_object_mut()
            .unwrap()
            .extend(container.as_object().unwrap().clone());
        pod(json!({"containers": [c]}))
    }

    #[test]
    fn env_from_a_secret_ref_uses_the_secret() {
        let spec = app(json!({"envFrom": [{"configMapRef": {"name": "db"}}, {"secretRef": {"name": "db"}}]}));
        assert!(uses_secret(&spec, "db"));
        assert!(!uses_secret(&spec, "other"));
    }

    #[test]
    fn a_secret_key_ref_in_env_uses_the_secret() {
        let spec = app(json!({"env": [
            {"name": "PLAIN", "value": "x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ]}));
        assert!(uses_secret(&spec, "db"));
        assert!(!uses_secret(&spec, "x"));
    }

    #[test]
    fn init_containers_count_too() {
        let spec = pod(json!({
            "initContainers": [{"name": "migrate", "envFrom": [{"secretRef": {"name": "db"}}]}],
            "containers": [{"name": "app"}],
        }));
        assert!(uses_secret(&spec, "db"));
    }

    #[test]
    fn secret_and_projected_volumes_use_the_secret() {
        let secret_volume = pod(json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "tls", "secret": {"secretName": "tls"}}],
        }));
        assert!(uses_secret(&secret_volume, "tls"));
        assert!(!uses_secret(&secret_volume, "db"));

        let projected = pod(json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "all", "projected": {"sources": [
                {"configMap": {"name": "settings"}},
                {"serviceAccountToken": {"path": "token"}},
                {"secret": {"name": "db", "items": [{"key": "password", "path": "pw"}]}},
            ]}}],
        }));
        assert!(uses_secret(&projected, "db"));
        assert!(
            !uses_secret(&projected, "settings"),
            "a ConfigMap of the same name is not the Secret"
        );
    }

    #[test]
    fn other_references_do_not_count() {
        let spec = pod(json!({
            "imagePullSecrets": [{"name": "db"}],
            "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "db"}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "db", "key": "k"}}}]}],
            "volumes": [{"name": "cm", "configMap": {"name": "db"}}, {"name": "empty", "emptyDir": {}}],
        }));
        assert!(!uses_secret(&spec, "db"));
    }
}
