//! Path 3 of issue 13: Vault's own machinery named as a source. The CRD schema refuses it, for
//! every source kind and whatever the identity, with a message naming the rule.

use serde_json::json;

use crate::{assert_schema_refuses, kubernetes_auth, mallory, policies};

#[tokio::test]
async fn reserved_vault_paths_are_refused_by_the_schema_for_every_source_kind() {
    let t = mallory("reserved-paths").await;
    let reserved = "reserved paths sys, auth, cubbyhole or identity";
    let attacks = [
        (
            json!({"kv": {"mount": "auth", "path": "token/lookup-self", "engine": "v1"}}),
            reserved,
        ),
        (
            json!({"kv": {"mount": "cubbyhole", "path": "x", "engine": "v1"}}),
            reserved,
        ),
        (
            json!({"kv": {"mount": "identity", "path": "oidc/token/x", "engine": "v1"}}),
            reserved,
        ),
        (
            json!({"dynamic": {"mount": "sys", "path": "policies/acl/pwned", "method": "PUT", "params": {"policy": "path \"*\" {capabilities=[\"sudo\"]}"}}}),
            reserved,
        ),
        (
            json!({"dynamic": {"mount": "team-a/sys", "path": "wrapping/unwrap", "method": "POST"}}),
            reserved,
        ),
        (
            json!({"dynamic": {"mount": "ns1", "path": "sys/policies/acl/pwned", "method": "PUT"}}),
            reserved,
        ),
        (
            json!({"kv": {"mount": "kv1", "path": "child/auth/token/create", "engine": "v1"}}),
            reserved,
        ),
        (
            json!({"pki": {"mount": "sys", "role": "x", "commonName": "a"}}),
            reserved,
        ),
        (
            json!({"kv": {"mount": "secret", "path": "../sys/policies/acl/x", "engine": "v1"}}),
            "'..' segments",
        ),
        (json!({"kv": {"mount": "secret/..", "path": "sys/x"}}), "'..' segments"),
        (
            json!({"kv": {"mount": "secret", "path": "%2e%2e/%2e%2e/sys/x"}}),
            "should match",
        ),
        (
            json!({"kv": {"mount": "secret", "path": "x?list=true"}}),
            "should match",
        ),
    ];
    for (i, (source, needle)) in attacks.into_iter().enumerate() {
        let spec = json!({"auth": kubernetes_auth(&t), "sources": [source]});
        assert_schema_refuses(&t, &format!("attack-{i}"), spec, needle).await;
    }
    assert!(
        !policies(&t).contains(&"pwned".to_owned()),
        "the attack created a Vault policy"
    );
}

#[tokio::test]
async fn a_kv_v2_secret_may_be_named_like_a_reserved_mount() {
    let t = mallory("reserved-names").await;
    t.op.bao.put(&t.path("auth"), &[("k", "v1")]);
    let spec = json!({"auth": kubernetes_auth(&t), "sources": [{"kv": {"mount": "secret", "path": t.path("auth")}}]});
    t.create_vs("app", spec)
        .await
        .expect("a kv v2 path reads behind data/, never a reserved mount");
    t.wait_ready("app", "True", "Synced").await;
}
