//! `--watch-namespaces a,b,c`: one operator process with one watch per namespace syncs the
//! VaultSecrets of the three, repairs a managed Secret deleted in any of them, and never touches
//! a fourth namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vaultsync::api::VaultSecret;
use xtask::Env;

use crate::common::replica::{prepare, start_replica_for};
use crate::common::{poll_for, value};

const WATCHED: [&str; 3] = ["watch-a", "watch-b", "watch-c"];
const UNWATCHED: &str = "watch-x";

/// The Secret `app` of `ns`, once it holds `password`.
async fn synced(client: &kube::Client, ns: &str, password: &str) -> Secret {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    poll_for(
        &format!("Secret {ns}/app to hold {password}"),
        Duration::from_secs(60),
        async || {
            let s = secrets.get_opt("app").await.ok().flatten()?;
            (value(&s, "password").as_deref() == Some(password)).then_some(s)
        },
    )
    .await
}

#[tokio::test]
async fn one_operator_watching_three_namespaces_syncs_each_and_no_other() {
    let env = Env::shared();
    let client = prepare(env, UNWATCHED).await;
    for ns in WATCHED.into_iter().chain([UNWATCHED]) {
        prepare(env, ns).await;
        let put = env
            .bao()
            .args([
                "kv",
                "put",
                "-mount=secret",
                &format!("{ns}/app"),
                &format!("password=in-{ns}"),
            ])
            .output()
            .expect("bao");
        assert!(put.status.success(), "bao kv put for {ns}");
        let vs: VaultSecret = serde_json::from_value(json!({
            "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"sources": [{"kv": {"mount": "secret", "path": format!("{ns}/app")}}]},
        }))
        .expect("object");
        let api: Api<VaultSecret> = Api::namespaced(client.clone(), ns);
        let _ = api.delete("app", &DeleteParams::default()).await;
        poll_for(
            "a previous run's VaultSecret to go",
            Duration::from_secs(30),
            async || api.get_opt("app").await.expect("get").is_none().then_some(()),
        )
        .await;
        api.create(&PostParams::default(), &vs)
            .await
            .expect("create VaultSecret");
    }
    let _replica = start_replica_for(
        env,
        "replica-watch",
        &WATCHED.join(","),
        "vaultsync-leader-watch",
        &env.kubeconfig,
    );
    for ns in WATCHED {
        synced(&client, ns, &format!("in-{ns}")).await;
    }

    // The managed-Secret watch of the second namespace brings its Secret back.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), WATCHED[1]);
    let before = secrets.get("app").await.expect("Secret");
    secrets
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let again = synced(&client, WATCHED[1], &format!("in-{}", WATCHED[1])).await;
    assert_ne!(again.metadata.uid, before.metadata.uid, "a new Secret");

    // By now the operator has had every chance to see the fourth namespace's VaultSecret.
    let api: Api<VaultSecret> = Api::namespaced(client.clone(), UNWATCHED);
    let untouched = api.get("app").await.expect("VaultSecret");
    assert!(
        untouched.status.is_none(),
        "a VaultSecret outside the watched namespaces got a status: {:?}",
        untouched.status
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), UNWATCHED);
    assert!(secrets.get_opt("app").await.expect("get").is_none());
}
