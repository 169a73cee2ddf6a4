//! Acceptance 4: a short-lived Vault token is renewed, then replaced by a new login before its
//! max TTL, and syncing goes on without a single failed reconcile.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::common::auth::{kubernetes_logins, renewals, succeeded};
use crate::team::{Team, wait_synced};

/// VaultSecrets sharing the identity, created [`STAGGER`] apart: together they use the client
/// every two seconds or so, so some use falls between two thirds of the 20 s TTL and its end. (One
/// object refreshing every ~10 s would touch the token only at ~0, ~10 and ~19 s.)
const OBJECTS: usize = 6;
const STAGGER: Duration = Duration::from_millis(1700);
/// Bound for the observation: the max TTL (60 s) plus a refresh interval and slack.
const OBSERVE: Duration = Duration::from_secs(100);

#[tokio::test]
async fn a_short_lived_token_is_renewed_then_replaced_without_a_failed_sync() {
    let team = Team::with_role("renew", &["token_ttl=20s", "token_max_ttl=60s"]).await;
    let t = &team.t;
    let bao = &t.op.bao;
    let path = t.path("rotating");
    bao.put(&path, &[("value", "v1")]);
    let spec = json!({
        "auth": team.auth(),
        "sources": [{"kv": {"mount": "secret", "path": path}}],
        "refresh": {"interval": "10s"},
    });
    let names: Vec<String> = (0..OBJECTS).map(|i| format!("r{i}")).collect();
    for name in &names {
        t.create_vs(name, spec.clone()).await.expect("create VaultSecret");
        // Spreads the refreshes over the interval (a schedule, not a synchronisation).
        tokio::time::sleep(STAGGER).await;
    }
    for name in &names {
        wait_synced(t, name, "value", "v1").await;
        t.wait_ready(name, "True", "Synced").await;
    }

    // Watch every object until the audit log shows a renewal and a second login by the role.
    let mut updates = watcher(t.vaultsecrets(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut not_ready = Vec::new();
    let counts = || {
        let logins = kubernetes_logins(bao, &team.role);
        let ok = logins.iter().filter(|e| succeeded(e)).count();
        (ok, logins.len() - ok, renewals(bao, &team.role))
    };
    let observed = tokio::time::timeout(OBSERVE, async {
        loop {
            tokio::select! {
                update = updates.try_next() => {
                    let vs = update.expect("watch VaultSecrets").expect("the watch goes on");
                    let ready = vs.status.as_ref().and_then(|s| s.ready());
                    if ready.is_none_or(|c| c.status != "True") {
                        let name = vs.metadata.name.clone().unwrap_or_default();
                        not_ready.push(format!("{name}: {ready:?}"));
                    }
                }
                _ = tick.tick() => {
                    let (logins, _, renewed) = counts();
                    if logins >= 2 && renewed >= 1 {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let (logins, refused, renewed) = counts();
    assert!(
        observed.is_ok(),
        "within {OBSERVE:?} role {} logged in {logins} times ({refused} refused) and renewed {renewed} \
         times; expected a renew-self and then a second login",
        team.role
    );
    assert!(
        not_ready.is_empty(),
        "a VaultSecret left Ready=True across renewal and re-login: {not_ready:#?}"
    );

    // The client that replaced the first one still syncs.
    bao.put(&path, &[("value", "v2")]);
    for name in &names {
        wait_synced(t, name, "value", "v2").await;
        t.wait_ready(name, "True", "Synced").await;
    }
    let events = Api::<Event>::namespaced(t.client.clone(), &t.ns)
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let warnings: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| format!("{:?} {:?}: {:?}", e.involved_object.name, e.reason, e.message))
        .collect();
    assert!(warnings.is_empty(), "failed reconciles: {warnings:#?}");

    // The token the operator holds for this identity is exported with its expiry, labelled by
    // namespace, ServiceAccount and role only.
    let (_, scrape) = t.op.get("/metrics").await;
    let series = format!(
        "vaultsync_vault_token_expiry_timestamp_seconds{{identity=\"kubernetes/{}/app/{}\"}}",
        t.ns, team.role
    );
    let expiry: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"));
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        expiry > now - 5.0 && expiry < now + 65.0,
        "token expiry {expiry} vs now {now}: within the 60 s max TTL"
    );
}
