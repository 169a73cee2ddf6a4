//! Acceptance 8: no secret value, ServiceAccount token, Vault token or secret ID ever shows in the
//! operator's logs, in Events or in a VaultSecret's status — on success or on failure.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use vaultsync::api::VaultSecret;

use crate::common::auth::{approle_role, token_with_policy};
use crate::common::captured_logs;
use crate::team::{Team, wait_synced};

const VALUE: &str = "Tenancy-Leak-Canary-41c9e2";
/// Looks like an OpenBao service token, and is refused.
const BOGUS_TOKEN: &str = "s.BogusTokenCanary7Q2wX9zK";
const BOGUS_SECRET_ID: &str = "0badc0de-5ec7-1d00-ca4a-27e11a4b0b0e";
/// How every JWT (a ServiceAccount token) starts: base64 of `{"alg":`.
const JWT_START: &str = "eyJhbGciOi";

#[tokio::test]
async fn tokens_secret_ids_and_values_never_appear_in_logs_events_or_statuses() {
    let team = Team::new("leak").await;
    let t = &team.t;
    let bao = &t.op.bao;
    bao.put(&t.path("db"), &[("password", VALUE)]);
    let (role_id, secret_id) = approle_role(bao, &t.ns, &t.ns);
    let token = token_with_policy(bao, &t.ns);
    // Credentials in Secrets named apart from the VaultSecrets' own destination Secrets.
    t.apply_secret("cred-approle", &[("secret-id", &secret_id)]).await;
    t.apply_secret("cred-bad-approle", &[("secret-id", BOGUS_SECRET_ID)])
        .await;
    t.apply_secret("cred-token", &[("token", &token)]).await;
    t.apply_secret("cred-bad-token", &[("token", BOGUS_TOKEN)]).await;

    let source = json!([{"kv": {"mount": "secret", "path": t.path("db")}}]);
    let approle =
        |secret: &str| json!({"appRole": {"roleId": role_id, "secretIdRef": {"name": secret, "key": "secret-id"}}});
    let token_auth = |secret: &str| json!({"token": {"secretRef": {"name": secret, "key": "token"}}});
    let succeeding = [
        ("kube", team.auth()),
        ("approle", approle("cred-approle")),
        ("token", token_auth("cred-token")),
    ];
    let failing = [
        ("bad-approle", approle("cred-bad-approle")),
        ("bad-token", token_auth("cred-bad-token")),
    ];
    for (name, auth) in succeeding.iter().chain(&failing) {
        t.create_vs(name, json!({"auth": auth, "sources": source}))
            .await
            .expect("create VaultSecret");
    }
    // Denied after a successful login: the read of a path outside the policy.
    let denied = json!({"auth": team.auth(), "sources": [{"kv": {"mount": "secret", "path": "elsewhere/db"}}]});
    t.create_vs("denied", denied).await.expect("create VaultSecret");

    for (name, _) in &succeeding {
        wait_synced(t, name, "password", VALUE).await;
        t.wait_ready(name, "True", "Synced").await;
    }
    for name in ["bad-approle", "bad-token", "denied"] {
        t.wait_vs(name, &format!("{name} Ready=False"), |vs: Option<&VaultSecret>| {
            vs.and_then(|vs| vs.status.as_ref()?.ready().cloned())
                .is_some_and(|c| c.status == "False")
        })
        .await;
    }

    let statuses = Api::<VaultSecret>::all(t.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list VaultSecrets");
    let statuses: Vec<_> = statuses.items.iter().map(|vs| &vs.status).collect();
    let events = Api::<Event>::all(t.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let places = [
        ("the operator's logs", captured_logs()),
        (
            "an Event",
            serde_json::to_string(&events.items).expect("Events as JSON"),
        ),
        (
            "a VaultSecret status",
            serde_json::to_string(&statuses).expect("statuses as JSON"),
        ),
    ];
    let known = [
        ("the secret value", VALUE),
        ("the AppRole secret ID", secret_id.as_str()),
        ("the refused AppRole secret ID", BOGUS_SECRET_ID),
        ("the Vault token from the Secret", token.as_str()),
        ("the refused Vault token", BOGUS_TOKEN),
        ("the operator's own Vault token", t.op.env.vault_token.as_str()),
        ("a ServiceAccount token (JWT)", JWT_START),
    ];
    for (place, text) in &places {
        for (what, needle) in known {
            assert!(!text.contains(needle), "{what} appears in {place}");
        }
        if let Some(found) = vault_token_in(text) {
            let shown = found.get(..6).unwrap_or(found);
            panic!("a Vault token ({shown}…) appears in {place}");
        }
    }
}

/// The first thing in `text` shaped like an OpenBao or Vault service token: `s.`, `hvs.` or `hvb.`
/// followed by at least 24 letters and digits.
fn vault_token_in(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    ["s.", "hvs.", "hvb."].into_iter().find_map(|prefix| {
        text.match_indices(prefix).find_map(|(at, _)| {
            let standalone = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            let body = text[at + prefix.len()..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            (standalone && body >= 24).then(|| &text[at..at + prefix.len() + body])
        })
    })
}
