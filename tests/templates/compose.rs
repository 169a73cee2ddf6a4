//! Templates compose new keys from the sources, and follow their changes.

use kube::api::{ObjectMeta, PostParams};
use serde_json::{Value, json};
use vaultsync::api::VaultSecret;

use crate::common::{TestNs, has_value, value};

#[tokio::test]
async fn a_database_url_is_composed_and_follows_a_password_change() {
    let t = TestNs::new("dburl").await;
    let path = t.path("db");
    t.op.bao.put(&path, &[("username", "shop"), ("password", "first pw")]);
    let spec = json!({
        "sources": [{"name": "db", "kv": {"mount": "secret", "path": path}}],
        "destination": {"templates": {
            "DATABASE_URL": "postgres://{{ username }}:{{ password | urlencode }}@db.{{ metadata.namespace }}:5432/shop?v={{ sources.db.version }}&app={{ metadata.labels.app }}"
        }},
        "refresh": {"interval": "10s"},
    });
    // A label read by a template (the operator's cache keeps labels only for VaultSecrets with templates).
    let vs = VaultSecret {
        metadata: ObjectMeta {
            name: Some("shop".into()),
            labels: Some([("app".to_owned(), "shop-web".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value(spec).expect("spec"),
        status: None,
    };
    t.vaultsecrets()
        .create(&PostParams::default(), &vs)
        .await
        .expect("create VaultSecret");
    let want = format!("postgres://shop:first%20pw@db.{}:5432/shop?v=1&app=shop-web", t.ns);
    let secret = t
        .wait_secret("shop", "the composed DATABASE_URL", has_value("DATABASE_URL", &want))
        .await;
    assert_eq!(
        value(&secret, "password").as_deref(),
        Some("first pw"),
        "source keys are kept by default"
    );

    t.op.bao.put(&path, &[("username", "shop"), ("password", "second")]);
    let want = format!("postgres://shop:second@db.{}:5432/shop?v=2&app=shop-web", t.ns);
    t.wait_secret(
        "shop",
        "DATABASE_URL with the new password",
        has_value("DATABASE_URL", &want),
    )
    .await;
}

#[tokio::test]
async fn a_dockerconfigjson_secret_is_accepted_and_parses_as_the_expected_json() {
    let t = TestNs::new("docker").await;
    let path = t.path("registry");
    t.op.bao.put(&path, &[("user", "robot"), ("token", "tok-123")]);
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "destination": {
            "type": "kubernetes.io/dockerconfigjson",
            "templateOnly": true,
            "templates": {".dockerconfigjson": "{{ dockerconfigjson('ghcr.io', user, token) }}"},
        },
    });
    t.create_vs("pull", spec).await.expect("create VaultSecret");
    t.wait_ready("pull", "True", "Synced").await;
    let secret = t.secrets().get("pull").await.expect("get Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let data = secret.data.expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [".dockerconfigjson"],
        "templateOnly keeps only templates"
    );
    let doc: Value = serde_json::from_slice(&data[".dockerconfigjson"].0).expect("JSON");
    assert_eq!(
        doc,
        json!({"auths": {"ghcr.io": {"username": "robot", "password": "tok-123", "auth": "cm9ib3Q6dG9rLTEyMw=="}}})
    );
}

#[tokio::test]
async fn keys_are_renamed_prefixed_and_base64_values_written_as_raw_bytes() {
    let t = TestNs::new("mapping").await;
    let path = t.path("files");
    t.op.bao
        .put(&path, &[("keystore", "/wABAg=="), ("pass", "pw"), ("unused", "x")]);
    let spec = json!({
        "sources": [{"kv": {
            "mount": "secret", "path": path, "keys": ["keystore", "pass"],
            "decodeBase64": ["keystore"], "rename": {"pass": "password"}, "prefix": "app.",
        }}],
    });
    t.create_vs("files", spec).await.expect("create VaultSecret");
    t.wait_ready("files", "True", "Synced").await;
    let data = t.secrets().get("files").await.expect("get Secret").data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["app.keystore", "app.password"]);
    assert_eq!(
        data["app.keystore"].0,
        [0xff, 0x00, 0x01, 0x02],
        "raw bytes, not base64 text"
    );
    assert_eq!(data["app.password"].0, b"pw");
}
