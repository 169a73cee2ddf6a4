//! The operator's own code and calls, run with its ServiceAccount's token rather than as admin.

#![allow(clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;
use vaultsync::api::VaultSecret;
use vaultsync::controller::{Backoff, Settings};
use vaultsync::hash::HashKey;
use vaultsync::http::Readiness;
use vaultsync::leader::LeaderElection;
use vaultsync::metrics::Metrics;

use super::{OPERATOR_NS, install_namespaced, install_rbac, kubectl};
use crate::common::auth::{self, kubernetes_role, read_policy};
use crate::common::{Operator, TestNs, has_value, within};

/// A client that authenticates as ServiceAccount `namespace/name` with a token from
/// TokenRequest, as the operator does in a pod.
async fn client_as(op: &Operator, namespace: &str, name: &str) -> Client {
    Client::try_from(config_as(op, namespace, name).await).expect("kube client")
}

/// The configuration of [`client_as`].
async fn config_as(op: &Operator, namespace: &str, name: &str) -> kube::Config {
    let token = kubectl(op, &["create", "token", name, "-n", namespace, "--duration=10m"]);
    let kc = Kubeconfig::read_from(&op.env.kubeconfig).expect("read kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info = AuthInfo {
        token: Some(token.trim().to_owned().into()),
        ..Default::default()
    };
    config
}

#[tokio::test]
async fn the_operators_own_calls_succeed_with_its_service_account_token() {
    let t = TestNs::new("identity").await;
    install_rbac(t.op);
    let client = client_as(t.op, OPERATOR_NS, "vaultsync").await;

    // Start-up: the CRD check, then the hash key (read, or created by whoever is first).
    within("the ServiceAccount may list VaultSecrets", async {
        while Api::<VaultSecret>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    HashKey::load_or_create(client.clone(), OPERATOR_NS, "vaultsync-hash-key")
        .await
        .expect("hash key");
    // The metadata-only watch of the Secrets it wrote.
    let managed = ListParams::default().labels(&format!("{}={}", vaultsync::MANAGED_BY_LABEL, vaultsync::MANAGER));
    Api::<Secret>::all(client.clone())
        .list_metadata(&managed)
        .await
        .expect("list Secrets' metadata");

    // Leader election, under a Lease name of this test's own.
    let lease = format!("rbac-{}", t.ns);
    let election = LeaderElection::new(
        client.clone(),
        OPERATOR_NS,
        &lease,
        "rbac-test",
        Duration::from_secs(15),
    );
    within("leadership under the operator's identity", election.acquire()).await;
    election.release().await;
    let held = Api::<Lease>::namespaced(t.client.clone(), OPERATOR_NS)
        .get(&lease)
        .await
        .expect("Lease");
    assert_eq!(held.spec.and_then(|s| s.holder_identity), None, "released");
    Api::<Lease>::namespaced(t.client.clone(), OPERATOR_NS)
        .delete(&lease, &DeleteParams::default())
        .await
        .expect("delete Lease");

    // In an application namespace: a TokenRequest, a Secret written and deleted, an Event.
    let app_sa = t.create_service_account("app").await;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), &t.ns)
        .create_token_request("app", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &t.ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        data: Some([("k".to_owned(), k8s_openapi::ByteString(b"v".to_vec()))].into()),
        ..Default::default()
    };
    secrets
        .patch(
            "probe",
            &PatchParams::apply("vaultsync-rbac-test"),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply Secret");
    secrets
        .delete("probe", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let reporter = Reporter {
        controller: "vaultsync".into(),
        instance: Some("rbac-test".into()),
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "RbacProbe".into(),
        note: Some("the operator's identity may publish Events".into()),
        action: "Probe".into(),
        secondary: None,
    };
    Recorder::new(client.clone(), reporter)
        .publish(&event, &app_sa.object_ref(&()))
        .await
        .expect("publish Event");

    // And what it may not: a ConfigMap, a Lease outside its namespace.
    let denied = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(denied(
        Api::<ConfigMap>::namespaced(client.clone(), &t.ns)
            .get("kube-root-ca.crt")
            .await
            .map(drop)
    ));
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("elsewhere".into()),
            ..Default::default()
        },
        spec: None,
    };
    assert!(denied(
        Api::<Lease>::namespaced(client, &t.ns)
            .create(&PostParams::default(), &lease)
            .await
            .map(drop)
    ));
}

#[tokio::test]
async fn a_namespaced_install_syncs_as_its_own_service_account() {
    let t = TestNs::new("solo").await;
    install_namespaced(&t);
    let (op, bao) = (t.op, &t.op.bao);
    auth::setup(op);
    read_policy(bao, &t.ns, &t.ns);
    kubernetes_role(bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    bao.put(&t.path("db"), &[("password", "namespaced-1")]);

    // This test binary's own operator watches every namespace, this one too. With the same hash
    // key, both compute the same hashes and neither undoes what the other wrote.
    let shared = within("the e2e operator's hash key", async {
        loop {
            let api = Api::<Secret>::namespaced(t.client.clone(), OPERATOR_NS);
            if let Ok(Some(secret)) = api.get_opt("vaultsync-hash-key").await {
                return secret.data;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let key = Secret {
        metadata: ObjectMeta {
            name: Some("vaultsync-hash-key".into()),
            ..Default::default()
        },
        data: shared,
        ..Default::default()
    };
    t.secrets()
        .create(&PostParams::default(), &key)
        .await
        .expect("hash key");

    // The operator as config/namespaced runs it: its ServiceAccount's token, this namespace only.
    let config = config_as(op, &t.ns, "vaultsync").await;
    let client = Client::try_from(config.clone()).expect("kube client");
    within("RBAC to admit the new ServiceAccount", async {
        while Api::<VaultSecret>::namespaced(client.clone(), &t.ns)
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let settings = Settings {
        vault_address: Some(vaultsync::vault::parse_address(&op.env.vault_addr).expect("address")),
        vault_ca_pem: None,
        vault_token: None,
        default_identity_namespaces: Vec::new(),
        default_identity_leases_namespaces: Vec::new(),
        allowed_vault_addresses: Vec::new(),
        allowed_token_audiences: vec!["vault".into()],
        max_token_expiration: Duration::from_secs(600),
        vault_timeout: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(4),
        },
        concurrency: 4,
        namespace: t.ns.clone(),
        hash_key_secret: "vaultsync-hash-key".into(),
        instance: Some("namespaced".into()),
        rollout_debounce: Duration::from_secs(2),
        default_refresh: Duration::from_secs(3600),
        allow_templates: false,
        watch_namespaces: vec![t.ns.clone()],
    };
    let metrics = Metrics::new().expect("metrics registry");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let run = tokio::spawn(vaultsync::controller::run(
        config,
        settings,
        metrics.clone(),
        Readiness::default(),
        shutdown,
    ));

    let spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("db")}}],
    });
    t.create_vs("db", spec).await.expect("create VaultSecret");
    t.wait_secret("db", "the synced Secret", has_value("password", "namespaced-1"))
        .await;
    // Its own registry says it synced db: every call of the sync succeeded under the Role.
    let series = format!("vaultsync_secret_ready{{name=\"db\",namespace=\"{}\"}} 1", t.ns);
    within("the namespaced operator to report db ready", async {
        while !metrics.render().lines().any(|l| l == series) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        !run.is_finished(),
        "the namespaced operator stopped early: {:?}",
        run.await
    );
    stop.send(()).ok();
    let result = within("the namespaced operator to shut down", run).await.expect("join");
    assert!(result.is_ok(), "the namespaced operator failed: {result:?}");
}
