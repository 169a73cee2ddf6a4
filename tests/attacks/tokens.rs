//! Path 2 of issue 13: minting ServiceAccount tokens the Kubernetes API server accepts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::common::auth::kubernetes_logins;
use crate::common::within;
use crate::{api_audience, authenticates, kubernetes_auth, mallory, trusted};

#[tokio::test]
async fn a_token_with_the_api_servers_audience_is_discarded_before_any_login() {
    let t = mallory("api-audience").await;
    // This binary's administrator allow-lists the API server's audience on purpose: only the
    // API server's own verdict (asked by the operator) stands between the token and a login.
    let mut auth = kubernetes_auth(&t);
    auth["kubernetes"]["audiences"] = json!([api_audience()]);
    let sources = json!([{"kv": {"mount": "secret", "path": t.path("x")}}]);
    t.create_vs("default-vault", json!({"auth": auth, "sources": sources}))
        .await
        .expect("create VaultSecret");
    let to_trusted = json!({"vault": {"address": trusted().url()}, "auth": auth, "sources": sources});
    t.create_vs("allowed-vault", to_trusted)
        .await
        .expect("create VaultSecret");
    for name in ["default-vault", "allowed-vault"] {
        let vs = t.wait_ready(name, "False", "AudienceNotAllowed").await;
        let message = &vs.status.as_ref().and_then(|s| s.ready()).expect("Ready").message;
        assert!(message.contains("accepts a token with these audiences"), "{message}");
    }
    assert!(
        kubernetes_logins(&t.op.bao, &t.ns).is_empty(),
        "a login was attempted at OpenBao"
    );
    let roles = trusted().json_strings("role");
    assert!(!roles.contains(&t.ns), "a login was attempted at the other Vault");
}

#[tokio::test]
async fn audiences_and_lifetimes_the_administrator_did_not_allow_are_refused() {
    let t = mallory("token-limits").await;
    let sources = json!([{"kv": {"mount": "secret", "path": t.path("x")}}]);
    let mut other = kubernetes_auth(&t);
    other["kubernetes"]["audiences"] = json!(["vault", "https://kubernetes.default.svc.cluster.local"]);
    t.create_vs("audience", json!({"auth": other, "sources": sources}))
        .await
        .expect("create VaultSecret");
    let mut long = kubernetes_auth(&t);
    long["kubernetes"]["tokenExpirationSeconds"] = json!(86400);
    t.create_vs("lifetime", json!({"auth": long, "sources": sources}))
        .await
        .expect("create VaultSecret");
    let vs = t.wait_ready("audience", "False", "AudienceNotAllowed").await;
    let message = &vs.status.as_ref().and_then(|s| s.ready()).expect("Ready").message;
    assert!(message.contains("--allowed-token-audiences"), "{message}");
    t.wait_ready("lifetime", "False", "TokenLifetimeNotAllowed").await;
    assert!(kubernetes_logins(&t.op.bao, &t.ns).is_empty(), "a login was attempted");
}

#[tokio::test]
async fn the_token_an_allowed_vault_receives_is_short_lived_and_useless_against_the_api_server() {
    // Both logins that present a ServiceAccount token mint it the same way.
    for method in ["kubernetes", "jwt"] {
        let t = mallory(&format!("login-token-{method}")).await;
        let spec = json!({
            "vault": {"address": trusted().url()},
            "auth": {method: {"role": t.ns, "serviceAccountName": crate::SA}},
            "sources": [{"kv": {"mount": "secret", "path": t.path("x")}}],
        });
        t.create_vs("app", spec).await.expect("create VaultSecret");
        // The capture server denies the login; what matters is the token it was sent.
        t.wait_ready("app", "False", "LoginFailed").await;
        let jwts = within("the login to reach the allowed Vault", async {
            loop {
                let mine: Vec<(String, Value)> = trusted()
                    .json_strings("jwt")
                    .into_iter()
                    .map(|jwt| {
                        let claims = claims(&jwt);
                        (jwt, claims)
                    })
                    .filter(|(_, c)| c["sub"] == format!("system:serviceaccount:{}:app", t.ns))
                    .collect();
                if !mine.is_empty() {
                    return mine;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await;
        for (jwt, claims) in jwts {
            assert_eq!(claims["aud"], json!(["vault"]), "{method}: {claims}");
            let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
            assert!(lifetime <= 600, "{method}: a token for {lifetime} s was minted");
            assert!(
                !authenticates(&t, &jwt).await,
                "{method}: the login token authenticates to the API server"
            );
        }
    }
}

/// The claims of a JWT (its payload, unverified).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}
