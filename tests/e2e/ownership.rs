//! The Secret belongs to its VaultSecret: restored when tampered with, collected on delete, and
//! never taken from someone else unless asked.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use serde_json::json;

use std::time::Duration;

use crate::common::{TestNs, has_value, value, within, within_for};

#[tokio::test]
async fn a_deleted_or_hand_edited_secret_is_restored_long_before_the_refresh() {
    let t = TestNs::new("restore").await;
    t.op.bao.put(&t.path("db"), &[("password", "right")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("db")}}], "refresh": {"interval": "1h"}});
    t.create_vs("db", spec).await.expect("create VaultSecret");
    let original = t.wait_secret("db", "first sync", has_value("password", "right")).await;
    t.wait_ready("db", "True", "Synced").await;

    t.secrets()
        .delete("db", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let restored = t
        .wait_secret("db", "Secret recreated", has_value("password", "right"))
        .await;
    assert_ne!(restored.metadata.uid, original.metadata.uid, "a new Secret");
    // The first write had no Event; writing it again has one that says why.
    let event = within("the SecretWritten Event", async {
        loop {
            if let Some(e) = t.events("SecretWritten").await.pop() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(
        event.message.as_deref(),
        Some("Wrote Secret db again: it had been deleted")
    );

    let edit = json!({"data": {"password": ByteString(b"wrong".to_vec()), "added-by-hand": ByteString(b"x".to_vec())}});
    let params = PatchParams {
        field_manager: Some("someone".into()),
        ..Default::default()
    };
    t.secrets()
        .patch("db", &params, &Patch::Merge(&edit))
        .await
        .expect("edit Secret");
    let fixed = t
        .wait_secret("db", "value restored and foreign key removed", |s: Option<&Secret>| {
            s.is_some_and(|s| value(s, "password").as_deref() == Some("right") && value(s, "added-by-hand").is_none())
        })
        .await;
    assert_eq!(fixed.data.expect("data").len(), 1);
}

#[tokio::test]
async fn deleting_the_vaultsecret_garbage_collects_the_secret() {
    let t = TestNs::new("gc").await;
    t.op.bao.put(&t.path("gc"), &[("k", "v")]);
    t.create_vs(
        "gc",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("gc")}}]}),
    )
    .await
    .expect("create");
    let secret = t.wait_secret("gc", "first sync", has_value("k", "v")).await;
    let owner = &secret.metadata.owner_references.as_ref().expect("owner references")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("VaultSecret", "gc", Some(true))
    );

    t.vaultsecrets()
        .delete("gc", &DeleteParams::background())
        .await
        .expect("delete VaultSecret");
    let uid = secret.metadata.uid.clone().expect("uid");
    // The garbage collector learns about a new CRD on its 30 s discovery resync, so right after
    // the CRD is installed collection can take up to a minute.
    let gc = kube::runtime::wait::await_condition(t.secrets(), "gc", conditions::is_deleted(&uid));
    within_for(
        Duration::from_secs(90),
        "the controller-manager to collect the Secret",
        gc,
    )
    .await
    .expect("watch");
}

#[tokio::test]
async fn a_foreign_secret_is_left_alone_until_take_over_adopts_it() {
    let t = TestNs::new("adopt").await;
    t.op.bao.put(&t.path("adopt"), &[("key", "from-vault")]);
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("existing".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("key".to_string(), ByteString(b"by-hand".to_vec())),
                ("old".to_string(), ByteString(b"o".to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let created = t
        .secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign Secret");
    let spec =
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("adopt")}}], "destination": {"name": "existing"}});
    t.create_vs("adopter", spec).await.expect("create VaultSecret");

    let vs = t.wait_ready("adopter", "False", "SecretNotOwned").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("takeOver"), "the message says how to adopt: {message}");
    let untouched = t.secrets().get("existing").await.expect("get");
    assert_eq!(
        untouched.metadata.resource_version, created.metadata.resource_version,
        "foreign Secret modified"
    );

    let take_over = json!({"spec": {"destination": {"name": "existing", "takeOver": true}}});
    t.vaultsecrets()
        .patch("adopter", &PatchParams::default(), &Patch::Merge(&take_over))
        .await
        .expect("set takeOver");
    let adopted = t
        .wait_secret(
            "existing",
            "adopted content without the former keys",
            |s: Option<&Secret>| {
                s.is_some_and(|s| value(s, "key").as_deref() == Some("from-vault") && value(s, "old").is_none())
            },
        )
        .await;
    assert!(
        adopted
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.name == "adopter"))
    );
    t.wait_ready("adopter", "True", "Synced").await;
}

#[tokio::test]
async fn a_secret_controlled_by_another_vaultsecret_is_never_taken_even_with_take_over() {
    let t = TestNs::new("steal").await;
    t.op.bao.put(&t.path("a"), &[("k", "a")]);
    t.op.bao.put(&t.path("b"), &[("k", "b")]);
    t.create_vs(
        "first",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("a")}}], "destination": {"name": "shared"}}),
    )
    .await
    .expect("create first");
    t.wait_secret("shared", "first owner", has_value("k", "a")).await;
    t.create_vs(
        "second",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("b")}}], "destination": {"name": "shared", "takeOver": true}}),
    )
    .await
    .expect("create second");
    let vs = t.wait_ready("second", "False", "SecretNotOwned").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("controlled by VaultSecret first"), "{message}");
    let secret = t.secrets().get("shared").await.expect("get");
    assert_eq!(value(&secret, "k").as_deref(), Some("a"));
}

#[tokio::test]
async fn a_secret_another_operator_controls_is_adopted_once_its_owner_is_deleted_with_orphan_propagation() {
    // docs/migration.md: an ExternalSecret or VaultStaticSecret controls its Secret. A ConfigMap
    // stands in for it here; `kubectl delete --cascade=orphan` has the garbage collector remove
    // the owner's reference from the Secret, which takeOver may then adopt.
    let t = TestNs::new("migrate").await;
    t.op.bao.put(&t.path("app"), &[("password", "from-vault")]);
    let owner = t.kubectl(&["create", "configmap", "stand-in", "-o", "jsonpath={.metadata.uid}"]);
    let foreign = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "app", "namespace": t.ns,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "stand-in", "uid": owner, "controller": true}],
        },
        "stringData": {"password": "from-the-other-operator"},
    });
    crate::common::kubectl_apply(t.op.env, &foreign.to_string(), "create the controlled Secret");
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": t.path("app")}}],
        "destination": {"name": "app", "takeOver": true},
    });
    t.create_vs("app", spec).await.expect("create VaultSecret");
    let vs = t.wait_ready("app", "False", "SecretNotOwned").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(
        message.contains("stand-in"),
        "the message names the controller: {message}"
    );

    // Every state of the Secret from here on, to show it is never deleted nor emptied.
    let states = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watch = {
        let states = states.clone();
        let config = kube::runtime::watcher::Config::default().fields("metadata.name=app");
        let stream = kube::runtime::watcher(t.secrets(), config);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(Ok(event)) = futures::StreamExt::next(&mut stream).await {
                let state = match event {
                    kube::runtime::watcher::Event::Apply(s) | kube::runtime::watcher::Event::InitApply(s) => {
                        value(&s, "password").unwrap_or_default()
                    }
                    kube::runtime::watcher::Event::Delete(_) => "(deleted)".into(),
                    _ => continue,
                };
                states.lock().unwrap().push(state);
            }
        })
    };
    within("the watch to list the Secret", async {
        while states.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    t.kubectl(&["delete", "configmap", "stand-in", "--cascade=orphan"]);
    t.kubectl(&[
        "annotate",
        "vsec",
        "app",
        "vaultsync.dev/sync-requested=after-orphaning",
    ]);
    let adopted = t
        .wait_secret("app", "the Secret adopted", has_value("password", "from-vault"))
        .await;
    within("the watch to see the adopted Secret", async {
        while !states.lock().unwrap().iter().any(|s| s == "from-vault") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    watch.abort();
    let states = states.lock().unwrap().clone();
    assert!(
        states.first().is_some_and(|s| s == "from-the-other-operator")
            && states
                .iter()
                .all(|s| s == "from-the-other-operator" || s == "from-vault"),
        "the Secret was deleted or emptied during the handover: {states:?}"
    );
    let owners = adopted.metadata.owner_references.unwrap_or_default();
    assert!(
        owners.len() == 1 && owners[0].kind == "VaultSecret" && owners[0].name == "app",
        "{owners:?}"
    );
    t.wait_ready("app", "True", "Synced").await;
}
