//! JWT auth: OpenBao checks a ServiceAccount token against the API server's signing key and
//! issuer without calling the API server (a Vault that cannot reach a private control plane).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::auth::{jwt_logins, jwt_role, read_policy, renewals, succeeded};
use crate::common::{TestNs, within_for};
use crate::team::{SA, ns, wait_synced};

/// A namespace with ServiceAccount [`SA`] and JWT role `<ns>` bound to it for `audience`.
async fn jwt_team(prefix: &str, audience: &str, extra: &[&str]) -> TestNs {
    let t = ns(prefix).await;
    let bao = &t.op.bao;
    read_policy(bao, &t.ns, &t.ns);
    jwt_role(bao, &t.ns, &t.ns, SA, audience, &t.ns, extra);
    t.create_service_account(SA).await;
    t
}

fn spec(auth: Value, path: &str) -> Value {
    json!({"auth": {"jwt": auth}, "sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "10s"}})
}

#[tokio::test]
async fn a_jwt_login_syncs_and_logs_in_again_before_its_token_ends() {
    let t = jwt_team("jwt", "vault", &["token_ttl=15s", "token_max_ttl=30s"]).await;
    let bao = &t.op.bao;
    let path = t.path("db");
    bao.put(&path, &[("password", "jwt-1")]);
    t.create_vs("db", spec(json!({"role": t.ns, "serviceAccountName": SA}), &path))
        .await
        .expect("create VaultSecret");
    wait_synced(&t, "db", "password", "jwt-1").await;
    t.wait_ready("db", "True", "Synced").await;

    // The first token is renewed, then replaced by a second login before its 30 s max TTL.
    let counts = || {
        let ok = jwt_logins(bao, &t.ns).iter().filter(|e| succeeded(e)).count();
        (ok, renewals(bao, &t.ns))
    };
    within_for(Duration::from_secs(60), "a renewal and a second JWT login", async {
        loop {
            let (logins, renewed) = counts();
            if logins >= 2 && renewed >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    bao.put(&path, &[("password", "jwt-2")]);
    wait_synced(&t, "db", "password", "jwt-2").await;
    let vs = t.wait_ready("db", "True", "Synced").await;
    assert!(
        jwt_logins(bao, &t.ns).iter().all(succeeded),
        "a JWT login was refused: {:?}",
        vs.status
    );
    let (_, scrape) = t.op.get("/metrics").await;
    let series = format!(
        "vaultsync_vault_token_expiry_timestamp_seconds{{identity=\"jwt/{}/{SA}/{}\"}}",
        t.ns, t.ns
    );
    assert!(scrape.contains(&series), "{series} missing from /metrics");
}

#[tokio::test]
async fn jwt_logins_with_a_wrong_audience_or_role_are_refused_with_the_reason() {
    // The role wants tokens for `billing`; the VaultSecret presents one for `vault` (allowed by
    // the operator): OpenBao refuses it.
    let t = jwt_team("jwt-refused", "billing", &[]).await;
    let bao = &t.op.bao;
    let path = t.path("db");
    bao.put(&path, &[("password", "never-synced")]);
    t.create_vs("aud", spec(json!({"role": t.ns, "serviceAccountName": SA}), &path))
        .await
        .expect("create VaultSecret");
    let vs = t.wait_ready("aud", "False", "LoginFailed").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .unwrap_or_default();
    assert!(
        message.contains("jwt login") && message.contains("spec.auth.jwt.audiences"),
        "the message names the audience and where it is set: {message}"
    );
    assert!(!message.contains("eyJ"), "a token in the status: {message}");

    // A role that does not exist.
    t.create_vs(
        "role",
        spec(json!({"role": "no-such-role", "serviceAccountName": SA}), &path),
    )
    .await
    .expect("create VaultSecret");
    let vs = t.wait_ready("role", "False", "LoginFailed").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .unwrap_or_default();
    assert!(
        message.contains("no-such-role"),
        "the message names the role: {message}"
    );

    // An audience the operator does not allow: refused before any token is minted or sent.
    t.create_vs(
        "operator",
        spec(
            json!({"role": t.ns, "serviceAccountName": SA, "audiences": ["billing"]}),
            &path,
        ),
    )
    .await
    .expect("create VaultSecret");
    let vs = t.wait_ready("operator", "False", "AudienceNotAllowed").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .unwrap_or_default();
    assert!(message.contains("spec.auth.jwt.audiences"), "{message}");
    for name in ["aud", "role", "operator"] {
        assert!(
            t.secrets().get_opt(name).await.expect("get Secret").is_none(),
            "Secret {name} written"
        );
    }
}
