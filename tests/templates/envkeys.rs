//! Keys ready for `envFrom`, or a Warning naming those it would skip.

use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::json;

use crate::common::{TestNs, has_value};
use crate::events_json;

#[tokio::test]
async fn env_keys_turn_dotted_and_dashed_keys_into_environment_variable_names() {
    let t = TestNs::new("envkeys").await;
    let path = t.path("app");
    t.op.bao
        .put(&path, &[("db.password", "pw"), ("api-key", "k"), ("2fa", "seed")]);
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "destination": {"envKeys": true},
    });
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let secret = t
        .wait_secret("app", "env-ready keys", has_value("DB_PASSWORD", "pw"))
        .await;
    let keys: Vec<_> = secret.data.expect("data").into_keys().collect();
    assert_eq!(keys, ["API_KEY", "DB_PASSWORD", "_2FA"]);
    t.wait_ready("app", "True", "Synced").await;
    assert!(!events_json(&t).await.contains("KeysNotShellNames"));
}

#[tokio::test]
async fn without_env_keys_the_keys_envfrom_would_skip_are_named_in_a_warning_without_values() {
    let t = TestNs::new("envwarn").await;
    let path = t.path("app");
    t.op.bao.put(
        &path,
        &[("db.password", "value-never-shown"), ("API_KEY", "also-hidden")],
    );
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "10s"}});
    t.create_vs("app", spec).await.expect("create VaultSecret");
    t.wait_ready("app", "True", "Synced").await;

    // Two refreshes that change nothing publish no further warning.
    t.wait_reads(&path, 2).await;
    let warnings: Vec<Event> = Api::<Event>::namespaced(t.client.clone(), &t.ns)
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("KeysNotShellNames"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].series.is_none(),
        "the warning was repeated: {:?}",
        warnings[0].series
    );

    let events = events_json(&t).await;
    assert!(events.contains("KeysNotShellNames"), "{events}");
    assert!(events.contains("Keys db.password of Secret app"), "{events}");
    assert!(!events.contains("API_KEY"), "a valid name is not listed: {events}");
    assert!(
        !events.contains("value-never-shown") && !events.contains("also-hidden"),
        "{events}"
    );
}
