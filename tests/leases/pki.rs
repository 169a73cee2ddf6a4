//! PKI: a `kubernetes.io/tls` Secret whose certificate verifies against `ca.crt` and matches its
//! key, re-issued at `renewalPercent` of its lifetime.

use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::wait::await_condition;
use serde_json::json;

use crate::common::tls::{not_after, verify_tls};
use crate::common::{TestNs, db, has_value, within_for};

fn tls(secret: &Secret) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let data = secret.data.as_ref().expect("Secret data");
    let get = |key: &str| data.get(key).unwrap_or_else(|| panic!("no {key}")).0.clone();
    (get("tls.crt"), get("tls.key"), get("ca.crt"))
}

#[tokio::test]
async fn a_tls_secret_verifies_against_its_ca_and_is_reissued_at_the_renewal_percentage() {
    let t = TestNs::new("pki").await;
    let spec = json!({
        "sources": [{"name": "cert", "pki": {
            "mount": xtask::PKI_MOUNT, "role": xtask::PKI_ROLE, "commonName": "app.example.test",
            "altNames": ["www.example.test"], "ipSans": ["127.0.0.1"], "ttl": "30s",
        }}],
        "destination": {"type": "kubernetes.io/tls"},
        "refresh": {"renewalPercent": 50},
    });
    t.create_vs("web", spec).await.expect("create VaultSecret");
    t.wait_ready("web", "True", "Synced").await;
    let first = t.secrets().get("web").await.expect("Secret");
    assert_eq!(first.type_.as_deref(), Some("kubernetes.io/tls"));
    let (crt, key, ca) = tls(&first);
    verify_tls(&crt, &key, &ca).expect("the certificate verifies against ca.crt and matches tls.key");
    let issued_at = jiff::Timestamp::now();
    let expires = not_after(&crt);
    assert!(
        expires <= issued_at + SignedDuration::from_secs(31) && expires > issued_at + SignedDuration::from_secs(20),
        "a 30 s certificate expires at {expires}"
    );

    let reissued = within_for(
        Duration::from_secs(30),
        "a new certificate",
        await_condition(t.secrets(), "web", move |s: Option<&Secret>| {
            s.is_some_and(|s| tls(s).0 != crt)
        }),
    )
    .await
    .expect("watch Secret")
    .expect("Secret exists");
    let at = jiff::Timestamp::now();
    // Half of 30 s, and never after it (jitter only brings it forward); a little slack for the watch.
    assert!(
        at < expires - SignedDuration::from_secs(10),
        "re-issued at {at}, too close to the old certificate's expiry {expires}"
    );
    let (crt, key, ca) = tls(&reissued);
    verify_tls(&crt, &key, &ca).expect("the new certificate verifies");
    assert!(not_after(&crt) > expires);
}

#[tokio::test]
async fn a_sync_request_rereads_kv_sources_but_keeps_a_valid_certificate() {
    let t = TestNs::new("pki-force").await;
    let path = t.path("meta");
    t.op.bao.put(&path, &[("owner", "team-a")]);
    let spec = json!({
        "sources": [
            {"name": "cert", "pki": {
                "mount": xtask::PKI_MOUNT, "role": xtask::PKI_ROLE, "commonName": "app.example.test", "ttl": "1h",
            }},
            {"name": "meta", "kv": {"mount": "secret", "path": path}},
        ],
        "refresh": {"interval": "1h"},
    });
    t.create_vs("web", spec).await.expect("create VaultSecret");
    let vs = t.wait_ready("web", "True", "Synced").await;
    let serial = db::lease(&vs, "cert").id;
    let (crt, _, _) = tls(&t.secrets().get("web").await.expect("Secret"));

    t.op.bao.put(&path, &[("owner", "team-b")]);
    t.kubectl(&["annotate", "vaultsecret", "web", "vaultsync.dev/sync-requested=1"]);
    let after = t
        .wait_secret("web", "the requested sync", has_value("owner", "team-b"))
        .await;
    assert_eq!(tls(&after).0, crt, "a sync request re-issued the certificate");
    let vs = t.wait_ready("web", "True", "Synced").await;
    assert_eq!(db::lease(&vs, "cert").id, serial);
}
