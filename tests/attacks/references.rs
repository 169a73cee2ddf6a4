//! The smaller holes of issue 13: credentials in the address, and references that would climb
//! out of the namespace in a request URL.

use serde_json::json;

use crate::{assert_schema_refuses, kubernetes_auth, mallory};

#[tokio::test]
async fn an_address_with_credentials_is_refused_without_being_repeated() {
    let t = mallory("userinfo").await;
    let spec = json!({
        "vault": {"address": "http://user:hunter2@127.0.0.1:8200"},
        "auth": kubernetes_auth(&t),
        "sources": [{"kv": {"mount": "secret", "path": "x"}}],
    });
    assert_schema_refuses(&t, "userinfo", spec, "spec.vault.address").await;
}

#[tokio::test]
async fn secret_references_name_a_secret_of_the_namespace_and_nothing_else() {
    let t = mallory("references").await;
    let climb = "../../kube-system/secrets/x";
    let kv = json!([{"kv": {"mount": "secret", "path": "x"}}]);
    let specs = [
        json!({"auth": {"token": {"secretRef": {"name": climb, "key": "token"}}}, "sources": kv}),
        json!({"auth": {"appRole": {"roleId": "r", "secretIdRef": {"name": climb, "key": "id"}}}, "sources": kv}),
        json!({"vault": {"caSecretRef": {"name": climb, "key": "ca.crt"}}, "auth": kubernetes_auth(&t), "sources": kv}),
        json!({"auth": {"token": {"secretRef": {"name": "t", "key": "../x"}}}, "sources": kv}),
        json!({"vault": {"namespace": "a\r\nX-Vault-Token: x"}, "auth": kubernetes_auth(&t), "sources": kv}),
    ];
    for (i, spec) in specs.into_iter().enumerate() {
        assert_schema_refuses(&t, &format!("ref-{i}"), spec, "should match").await;
    }
    // A login is sent to `auth/<mount>/login`: the mount cannot climb out of `auth/`.
    let mut auth = kubernetes_auth(&t);
    auth["kubernetes"]["mount"] = json!("../../sys/wrapping");
    let spec = json!({"auth": auth, "sources": kv});
    assert_schema_refuses(&t, "auth-mount", spec, "'..' segments").await;
}
