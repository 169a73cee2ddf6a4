//! Two operator replicas as real processes: one leads, the other stands by and takes over when
//! the leader dies, without rewriting Secrets or re-issuing leases; a leader shutting down
//! releases the Lease.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use xtask::Env;

use crate::common::replica::{Replica, prepare, start_replica_for};
use crate::common::{OPERATOR_NS, poll_for, value};

mod fenced;
mod namespaces;

const LEASE: &str = "vaultsync-leader";

/// A replica that syncs namespace `ha` and elects its leader on Lease [`LEASE`].
fn start_replica(env: &Env, name: &'static str) -> Replica {
    start_replica_for(env, name, "ha", LEASE, &env.kubeconfig)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    holder_of(leases, LEASE).await
}

async fn holder_of(leases: &Api<Lease>, lease: &str) -> Option<String> {
    leases.get_opt(lease).await.ok().flatten()?.spec?.holder_identity
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies_without_rewriting_secrets() {
    let env = Env::shared();
    let client = prepare(env, "ha").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ha");

    let bao = |args: &[&str]| {
        assert!(
            env.bao().args(args).output().expect("bao").status.success(),
            "bao {args:?}"
        )
    };
    bao(&["kv", "put", "-mount=secret", "ha/app", "password=before"]);
    let mut replicas = vec![start_replica(env, "replica-a"), start_replica(env, "replica-b")];
    let vs: serde_json::Value = json!({
        "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "app", "namespace": "ha"},
        "spec": {"sources": [{"kv": {"mount": "secret", "path": "ha/app"}}], "refresh": {"interval": "10s"}},
    });
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "ha",
        &kube::api::ApiResource::erase::<vaultsync::api::VaultSecret>(&()),
    );
    api.create(&PostParams::default(), &serde_json::from_value(vs).expect("object"))
        .await
        .expect("create VaultSecret");
    // A leased source too: the new leader must renew its lease, not issue another.
    let vault = common::Bao::new(env);
    let creds = common::db::role(&vault, "ha", "20s", "10m");
    let db: serde_json::Value = json!({
        "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "db", "namespace": "ha"},
        "spec": {"sources": [{"dynamic": {"mount": common::db::MOUNT, "path": creds}}]},
    });
    api.create(&PostParams::default(), &serde_json::from_value(db).expect("object"))
        .await
        .expect("create VaultSecret");
    let vaultsecrets: Api<vaultsync::api::VaultSecret> = Api::namespaced(client.clone(), "ha");
    let lease = async || {
        let vs = vaultsecrets.get("db").await.ok()?;
        vs.status?.sources.first()?.lease.clone()
    };

    let synced = poll_for("the first sync", Duration::from_secs(60), async || {
        let s = secrets.get_opt("app").await.ok().flatten()?;
        (value(&s, "password").as_deref() == Some("before")).then_some(s)
    })
    .await;
    let leased = poll_for("the first lease", Duration::from_secs(60), lease).await;
    let db_synced = secrets.get("db").await.expect("Secret db");
    let leader = poll_for("a leader", Duration::from_secs(30), async || holder(&leases).await).await;
    let index = replicas
        .iter()
        .position(|r| r.name == leader)
        .expect("the leader is one of the replicas");
    let standby = replicas[1 - index].name;

    // Kill the leader without warning: no release, the standby must wait the Lease out.
    let killed_at = std::time::Instant::now();
    replicas.remove(index);
    let new_leader = poll_for("the standby to take over", Duration::from_secs(60), async || {
        holder(&leases).await.filter(|h| h == standby)
    })
    .await;
    println!(
        "{new_leader} took over {:.1?} after {leader} was killed",
        killed_at.elapsed()
    );

    // The new leader re-checks every VaultSecret and finds nothing to write.
    let refresh_reads = |env: &Env| {
        let log = std::fs::read_to_string(env.dir.join("openbao-audit.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"type\":\"response\"") && l.contains("secret/data/ha/app"))
            .count()
    };
    let reads = refresh_reads(env);
    poll_for(
        "the new leader to read the source",
        Duration::from_secs(30),
        async || (refresh_reads(env) > reads).then_some(()),
    )
    .await;
    let after = secrets.get("app").await.expect("Secret");
    assert_eq!(
        after.metadata.resource_version, synced.metadata.resource_version,
        "takeover rewrote the Secret"
    );
    let killed = jiff::Timestamp::now();
    let renewed = poll_for(
        "the new leader to renew the lease",
        Duration::from_secs(60),
        async || {
            lease()
                .await
                .filter(|l| l.expiry.0 > killed + jiff::SignedDuration::from_secs(20))
        },
    )
    .await;
    assert_eq!(renewed.id, leased.id, "the new leader issued a new lease");
    assert_eq!(common::db::issued(&vault, &creds), 1, "credentials issued twice");
    let db_after = secrets.get("db").await.expect("Secret db");
    assert_eq!(
        db_after.metadata.resource_version, db_synced.metadata.resource_version,
        "takeover rewrote the leased Secret"
    );

    // And it does the job: a change reaches the Secret.
    bao(&["kv", "put", "-mount=secret", "ha/app", "password=after"]);
    poll_for("the new leader to sync a change", Duration::from_secs(60), async || {
        let s = secrets.get_opt("app").await.ok().flatten()?;
        (value(&s, "password").as_deref() == Some("after")).then_some(())
    })
    .await;

    // A leader asked to stop releases the Lease at once.
    let last = &replicas[0];
    let status = Command::new("kill")
        .args(["-TERM", &last.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    poll_for("the Lease to be released", Duration::from_secs(20), async || {
        holder(&leases).await.is_none().then_some(())
    })
    .await;
}
