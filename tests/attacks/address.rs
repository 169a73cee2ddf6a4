//! Path 1 of issue 13: `spec.vault.address` pointed at a server the administrator never allowed.

use serde_json::json;

use crate::common::has_value;
use crate::{admin, foreign, kubernetes_auth, mallory, mallory_in_allowed_ns, trusted};

#[tokio::test]
async fn a_foreign_vault_address_receives_no_request_and_no_credential() {
    let t = mallory("foreign-address").await;
    let team = admin(&t).await;
    team.apply_secret("approle", &[("secret-id", "canary-secret-id-1")])
        .await;
    team.apply_secret("vault-token", &[("token", "canary-vault-token-1")])
        .await;
    let vault = json!({"address": foreign().url()});
    let sources = json!([{"kv": {"mount": "secret", "path": t.path("x")}}]);
    let auths = [
        ("kubernetes", kubernetes_auth(&t)),
        ("jwt", json!({"jwt": {"role": t.ns, "serviceAccountName": crate::SA}})),
        (
            "approle",
            json!({"appRole": {"roleId": "r", "secretIdRef": {"name": "approle", "key": "secret-id"}}}),
        ),
        (
            "token",
            json!({"token": {"secretRef": {"name": "vault-token", "key": "token"}}}),
        ),
    ];
    for (name, auth) in &auths {
        let spec = json!({"vault": vault, "auth": auth, "sources": sources});
        t.create_vs(name, spec).await.expect("mallory creates a VaultSecret");
    }
    // The operator's own token, in the namespace allowed to use it.
    let allowed = mallory_in_allowed_ns().await;
    let own = format!("foreign-{}", &t.ns[t.ns.len() - 6..]);
    let spec = json!({"vault": vault, "sources": [{"kv": {"mount": "secret", "path": allowed.path(&own)}}]});
    allowed.create_vs(&own, spec).await.expect("create VaultSecret");

    // A legitimate VaultSecret beside them keeps syncing.
    t.op.bao.put(&t.path("x"), &[("k", "v1")]);
    let legit = json!({"auth": kubernetes_auth(&t), "sources": sources});
    t.create_vs("legit", legit).await.expect("create VaultSecret");

    for (name, _) in &auths {
        let vs = t.wait_ready(name, "False", "VaultAddressNotAllowed").await;
        let message = &vs.status.as_ref().and_then(|s| s.ready()).expect("Ready").message;
        assert!(message.contains(&foreign().url()), "{message}");
        assert!(message.contains("--allowed-vault-addresses"), "{message}");
        assert!(!message.contains("canary"), "{message}");
    }
    // The operator's own token is refused any address but its default, before the address check.
    allowed.wait_ready(&own, "False", "OperatorIdentityNotAllowed").await;
    t.wait_secret("legit", "the legitimate VaultSecret to sync", has_value("k", "v1"))
        .await;
    assert_eq!(
        foreign().connections(),
        0,
        "the foreign address was contacted: {:?}",
        foreign().request_lines()
    );
}

#[tokio::test]
async fn the_operators_token_never_leaves_for_another_address_or_vault_namespace() {
    let t = mallory_in_allowed_ns().await;
    let suffix = rand_suffix();
    let path = t.path(&format!("own-{suffix}"));
    t.op.bao.put(&path, &[("k", "v1")]);
    let sources = json!([{"kv": {"mount": "secret", "path": path}}]);
    let cases = [
        ("other-address", json!({"address": trusted().url()})),
        ("vault-namespace", json!({"namespace": "elsewhere"})),
        ("own-ca", json!({"caSecretRef": {"name": "my-ca", "key": "ca.crt"}})),
    ];
    for (name, vault) in &cases {
        let name = format!("{name}-{suffix}");
        t.create_vs(&name, json!({"vault": vault, "sources": sources}))
            .await
            .expect("create VaultSecret");
    }
    // Without spec.vault it is the operator's own connection, and the kv source is read.
    let ok = format!("default-{suffix}");
    t.create_vs(&ok, json!({"sources": sources}))
        .await
        .expect("create VaultSecret");
    for (name, _) in &cases {
        let vs = t
            .wait_ready(&format!("{name}-{suffix}"), "False", "OperatorIdentityNotAllowed")
            .await;
        let message = &vs.status.as_ref().and_then(|s| s.ready()).expect("Ready").message;
        assert!(message.contains("set spec.auth"), "{message}");
    }
    t.wait_secret(&ok, "the operator's identity to read kv", has_value("k", "v1"))
        .await;
    let token = &t.op.env.vault_token;
    assert!(
        !trusted().text().contains(token.as_str()),
        "the operator's token reached another address"
    );
    assert!(
        !foreign().text().contains(token.as_str()),
        "the operator's token reached a foreign address"
    );
}

/// Six random lower-case letters and digits, for names in the shared namespace.
pub fn rand_suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase()
}
