//! Vault revokes leases with the token that issued them. A VaultSecret with its own, short-lived
//! Kubernetes-auth identity: the token is kept alive (and kept across a restart) while its leases
//! live, and leases are replaced before a token that reaches its max TTL takes them down.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

use crate::common::auth::{kubernetes_logins, kubernetes_role, read_policy, setup};
use crate::common::{TestNs, db, has_value, poll_for, restart_operator, within_for};
use crate::{assert_not_leaked, creds, lease, synced};

/// The token of a value kept in `vaultsync-lease-tokens` (`{"v": 1, "address", "token"}`; a
/// bare token, as older versions kept and a test below plants, reads as itself).
fn kept_token(value: &[u8]) -> String {
    match serde_json::from_slice::<Value>(value) {
        Ok(kept) => kept["token"].as_str().unwrap_or_default().to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

/// A role issuing credentials at a path of its own, readable by ServiceAccount `app` logging in
/// with Kubernetes auth role `<ns>` (`token` adds token_ttl/token_max_ttl); the VaultSecret spec.
async fn own_identity(t: &TestNs, lease_ttl: (&str, &str), token: &[&str]) -> (String, Value) {
    setup(t.op);
    let bao = &t.op.bao;
    let path = db::role(bao, &t.ns, lease_ttl.0, lease_ttl.1);
    db::policy(bao, &t.ns, &path);
    kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, token);
    t.create_service_account("app").await;
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": path}}],
    });
    (path, spec)
}

#[tokio::test]
async fn a_restarted_operator_keeps_the_short_lived_token_that_owns_the_lease_alive() {
    let t = TestNs::new("lease-token-restart").await;
    let bao = &t.op.bao;
    let (path, spec) = own_identity(&t, ("5m", "10m"), &["token_ttl=10s", "token_max_ttl=10m"]).await;
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let ((user, password), first) = synced(&t, "app").await;
    let before = t.secrets().get("app").await.expect("Secret");

    restart_operator().await;
    // 2.5 token lifetimes: a token left unrenewed would have expired, and its lease with it.
    let until = tokio::time::Instant::now() + Duration::from_secs(25);
    while tokio::time::Instant::now() < until {
        assert!(db::lease_exists(bao, &first.id), "the lease died after the restart");
        assert!(
            db::logs_in(bao, &user, &password),
            "the credentials died after the restart"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let vs = t.vaultsecrets().get("app").await.expect("VaultSecret");
    assert_eq!(lease(&vs).id, first.id);
    assert_eq!(db::issued(bao, &path), 1, "new credentials were issued");
    let after = t.secrets().get("app").await.expect("Secret");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);

    // The kept tokens and the credentials appear nowhere else.
    let kept = Api::<Secret>::namespaced(t.client.clone(), "vaultsync-system")
        .get("vaultsync-lease-tokens")
        .await
        .expect("the Secret keeping lease-owning tokens");
    let tokens: Vec<String> = kept
        .data
        .unwrap_or_default()
        .values()
        .map(|v| kept_token(&v.0))
        .collect();
    assert!(!tokens.is_empty());
    let mut needles: Vec<&str> = tokens.iter().map(String::as_str).collect();
    needles.push(&password);
    assert_not_leaked(&t, &needles).await;
}

#[tokio::test]
async fn leases_are_replaced_before_their_token_reaches_its_max_ttl_with_a_warning() {
    let t = TestNs::new("lease-token-max").await;
    let bao = &t.op.bao;
    let (_, spec) = own_identity(&t, ("5m", "10m"), &["token_ttl=6s", "token_max_ttl=20s"]).await;
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let ((user, password), first) = synced(&t, "app").await;

    let rotated = within_for(
        Duration::from_secs(60),
        "credentials replaced before the token's max TTL",
        await_condition(t.secrets(), "app", |s: Option<&Secret>| {
            s.is_some_and(|s| creds(s).0 != user)
        }),
    )
    .await
    .expect("watch Secret")
    .expect("Secret exists");
    let (new_user, new_password) = creds(&rotated);
    let vs = t
        .wait_vs_for("app", Duration::from_secs(10), "the new lease in status", |vs| {
            lease(vs).id != first.id
        })
        .await;
    let second = lease(&vs);
    assert_ne!(
        second.token_ref, first.token_ref,
        "the new lease must come from a fresh token"
    );
    assert!(
        second.issued.0 < first.issued.0 + jiff::SignedDuration::from_secs(20),
        "replaced at {} for a token logged in about {} with a 20 s max TTL",
        second.issued.0,
        first.issued.0
    );
    assert!(db::logs_in(bao, &new_user, &new_password));
    // The old lease dies with its token (Vault revokes it): the rotation was needed.
    db::wait_login_refused(bao, &user, &password, Duration::from_secs(30)).await;

    let warning = t.event("TokenExpiresBeforeLease").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(warning.message.as_deref().unwrap_or_default().contains("token_period"));
    let metrics = t.op.get("/metrics").await.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vaultsync_token_limited_rotations_total ") && !l.ends_with(" 0")),
        "the metric did not count the early rotation"
    );
    t.delete_vs("app").await;
}

#[tokio::test]
async fn the_kept_token_is_revoked_and_forgotten_once_it_owns_no_lease() {
    let t = TestNs::new("lease-token-release").await;
    let bao = &t.op.bao;
    // A long-lived token (768 h by default): only its release can end it early.
    let (_, spec) = own_identity(&t, ("5m", "10m"), &[]).await;
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let (_, first) = synced(&t, "app").await;
    let kept = Api::<Secret>::namespaced(t.client.clone(), "vaultsync-system");
    let token_of = |secret: &Secret| {
        secret
            .data
            .as_ref()
            .into_iter()
            .flatten()
            .map(|(_, v)| kept_token(&v.0))
            .find(|token| vaultsync::vault::token_ref(token) == first.token_ref.clone().unwrap_or_default())
    };
    let token = within_for(Duration::from_secs(10), "the token to be kept", async {
        loop {
            if let Some(secret) = kept.get_opt("vaultsync-lease-tokens").await.expect("get Secret")
                && let Some(token) = token_of(&secret)
            {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let lookup = |token: &str| {
        bao.env
            .bao()
            .args(["token", "lookup", token])
            .output()
            .expect("run bao")
            .status
            .success()
    };
    assert!(lookup(&token), "the kept token is live while it owns the lease");

    t.delete_vs("app").await;
    assert!(!db::lease_exists(bao, &first.id), "the lease was revoked on deletion");
    // Sweeps run every 15 s and leave a token alone for 30 s after a sync last held it.
    within_for(
        Duration::from_secs(90),
        "the kept token to be revoked and dropped",
        async {
            loop {
                let secret = kept.get_opt("vaultsync-lease-tokens").await.expect("get Secret");
                if !lookup(&token) && secret.as_ref().and_then(token_of).is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_kept_token_nobody_claims_is_revoked_and_dropped() {
    let t = TestNs::new("lease-token-unclaimed").await;
    let bao = &t.op.bao;
    // What an operator leaves when its last VaultSecret with leases is deleted while no operator
    // runs: a kept token no identity in use claims and no status names.
    let create = || {
        bao.run(&["token", "create", "-field=token", "-policy=default", "-ttl=768h"])
            .trim()
            .to_owned()
    };
    let (token, bare) = (create(), create());
    let suffix = &t.ns[t.ns.len() - 6..];
    let (key, bare_key) = (format!("unclaimed-{suffix}"), format!("unclaimed-bare-{suffix}"));
    let value = json!({"v": 1, "address": t.op.env.vault_addr, "token": token}).to_string();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let kept = Api::<Secret>::namespaced(t.client.clone(), "vaultsync-system");
    let patch = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "vaultsync-lease-tokens"},
        "data": {&key: b64(&value), &bare_key: b64(&bare)},
    });
    kept.patch(
        "vaultsync-lease-tokens",
        &kube::api::PatchParams::apply("tests"),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .expect("keep the tokens");
    let lookup = |token: &str| {
        let out = bao
            .env
            .bao()
            .args(["token", "lookup", token])
            .output()
            .expect("run bao");
        out.status.success()
    };
    assert!(lookup(&token));
    // The next operator to start looks at unclaimed tokens once it has led for a minute.
    restart_operator().await;
    within_for(Duration::from_secs(120), "the unclaimed tokens to be dropped", async {
        loop {
            let secret = kept.get_opt("vaultsync-lease-tokens").await.expect("get Secret");
            let data = secret.and_then(|s| s.data).unwrap_or_default();
            if !data.contains_key(&key) && !data.contains_key(&bare_key) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(!lookup(&token), "the unclaimed token is still live in OpenBao");
    // A bare token (kept by an older version) says nowhere where it is valid: only forgotten.
    assert!(lookup(&bare));
}

/// The keys of the kept token of ServiceAccount `app` (UID `uid`) logging in with Kubernetes
/// auth role `<ns>`: as versions before 2 derived it (written out here rather than asked of the
/// code under test: the Debug output of their identity enum, hashed with the address), and now.
fn token_keys(t: &TestNs, uid: &str) -> (String, String) {
    let conn = vaultsync::vault::Connection {
        address: vaultsync::vault::parse_address(&t.op.env.vault_addr).expect("address"),
        namespace: None,
        ca_pem: None,
    };
    let legacy = {
        use sha2::Digest;
        let debug = format!(
            r#"Kubernetes {{ mount: "kubernetes", role: "{ns}", namespace: "{ns}", service_account: "app", uid: "{uid}", audiences: ["vault"] }}"#,
            ns = t.ns
        );
        let mut hash = sha2::Sha256::new();
        hash.update(conn.address.as_str());
        hash.update([0]);
        hash.update([0]);
        hash.update(debug);
        hex::encode(&hash.finalize()[..16])
    };
    let identity = vaultsync::vault::Identity::new(
        "kubernetes",
        format!("kubernetes/{}/app/{}", t.ns, t.ns),
        vec![
            ("mount", "kubernetes".into()),
            ("role", t.ns.as_str().into()),
            ("namespace", t.ns.as_str().into()),
            ("service_account", "app".into()),
            ("uid", uid.into()),
            ("audiences", ["vault".to_owned()].as_slice().into()),
        ],
    );
    (legacy, vaultsync::vault::token_key(&conn, &identity))
}

#[tokio::test]
async fn after_an_upgrade_the_token_kept_under_the_old_key_keeps_its_lease_without_a_new_one_or_a_restart() {
    let t = TestNs::new("lease-token-upgrade-lease").await;
    let bao = &t.op.bao;
    let (path, spec) = own_identity(&t, ("5m", "10m"), &[]).await;
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let (_, first) = synced(&t, "app").await;
    let before = t.secrets().get("app").await.expect("Secret");
    let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(t.client.clone(), &t.ns)
        .get("app")
        .await
        .expect("ServiceAccount");
    let (legacy, key) = token_keys(&t, &sa.metadata.uid.expect("uid"));
    // What the previous release left behind: the token that owns the lease, bare, under the key
    // it derived, and nothing under the new one.
    let kept = Api::<Secret>::namespaced(t.client.clone(), "vaultsync-system");
    let get_kept = async || {
        let secret = kept.get("vaultsync-lease-tokens").await.expect("get Secret");
        secret.data.unwrap_or_default()
    };
    let token = get_kept()
        .await
        .get(&key)
        .map(|v| kept_token(&v.0))
        .expect("the token that owns the lease is kept under the new key");
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let downgrade = json!({"data": {&key: null, &legacy: b64(&token)}});
    kept.patch(
        "vaultsync-lease-tokens",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&downgrade),
    )
    .await
    .expect("keep the token as the previous release did");
    let logins = kubernetes_logins(bao, &t.ns).len();

    restart_operator().await;
    poll_for(
        "the kept token to move to the new key",
        Duration::from_secs(60),
        async || {
            let data = get_kept().await;
            let moved = data.get(&key).map(|v| kept_token(&v.0)) == Some(token.clone());
            (moved && !data.contains_key(&legacy)).then_some(())
        },
    )
    .await;
    let vs = t.vaultsecrets().get("app").await.expect("VaultSecret");
    assert_eq!(lease(&vs).id, first.id, "the lease was replaced");
    assert_eq!(db::issued(bao, &path), 1, "new credentials were issued");
    let after = t.secrets().get("app").await.expect("Secret");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the Secret was rewritten (workloads would restart)"
    );
    assert_eq!(
        kubernetes_logins(bao, &t.ns).len(),
        logins,
        "logged in anew instead of picking up the kept token"
    );
}

#[tokio::test]
async fn a_token_kept_by_an_older_version_is_picked_up_and_kept_under_the_new_key() {
    let t = TestNs::new("lease-token-upgrade").await;
    setup(t.op);
    let bao = &t.op.bao;
    read_policy(bao, &t.ns, &t.ns);
    kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    let sa = t.create_service_account("app").await;
    // Logged in as an older operator did, its token kept as it kept them: bare, under the key
    // derived from the identity's Debug output.
    let jwt = t.kubectl(&["create", "token", "app", "--audience", "vault"]);
    let token = bao
        .run(&[
            "write",
            "-field=token",
            "auth/kubernetes/login",
            &format!("role={}", t.ns),
            &format!("jwt={}", jwt.trim()),
        ])
        .trim()
        .to_owned();
    let (legacy, key) = token_keys(&t, &sa.metadata.uid.clone().expect("uid"));
    let kept = Api::<Secret>::namespaced(t.client.clone(), "vaultsync-system");
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let patch = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "vaultsync-lease-tokens"},
        "data": {&legacy: b64(&token)},
    });
    let apply = kube::api::PatchParams::apply("tests-upgrade");
    kept.patch("vaultsync-lease-tokens", &apply, &kube::api::Patch::Apply(&patch))
        .await
        .expect("keep the token");
    let logins = kubernetes_logins(bao, &t.ns).len();

    let path = t.path("config");
    bao.put(&path, &[("k", "v1")]);
    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": path}}],
    });
    t.create_vs("app", spec).await.expect("create VaultSecret");
    t.wait_secret("app", "the Secret", has_value("k", "v1")).await;
    assert_eq!(
        kubernetes_logins(bao, &t.ns).len(),
        logins,
        "logged in anew instead of picking up the kept token"
    );
    let data = kept
        .get("vaultsync-lease-tokens")
        .await
        .expect("get Secret")
        .data
        .unwrap_or_default();
    assert!(!data.contains_key(&legacy), "the old key is still there");
    // Compared, never printed: a failure names no token.
    assert!(
        data.get(&key).map(|v| kept_token(&v.0)) == Some(token),
        "the kept token is not under the new key"
    );
    t.delete_vs("app").await;
}
