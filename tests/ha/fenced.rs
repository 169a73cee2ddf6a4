//! A leader that stops hearing from the API server, or is frozen past its lease, stops acting
//! before a standby takes over, and never acts again.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use xtask::Env;

use crate::common::proxy::Proxy;
use crate::common::replica::{Replica, prepare, start_replica_for};
use crate::common::{OPERATOR_NS, kubectl, poll_for, value};
use crate::holder_of;

/// Sends `signal` (`STOP`, `CONT`) to `replica`.
fn signal(replica: &Replica, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &replica.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal}");
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_is_replaced_and_writes_nothing_when_it_thaws() {
    const NS: &str = "ha-freeze";
    const FREEZE_LEASE: &str = "vaultsync-freeze";
    let env = Env::shared();
    let client = prepare(env, NS).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let bao = |args: &[&str]| {
        assert!(
            env.bao().args(args).output().expect("bao").status.success(),
            "bao {args:?}"
        )
    };
    bao(&["kv", "put", "-mount=secret", "ha-freeze/app", "password=before"]);
    let mut replicas = vec![
        start_replica_for(env, "replica-c", NS, FREEZE_LEASE, &env.kubeconfig),
        start_replica_for(env, "replica-d", NS, FREEZE_LEASE, &env.kubeconfig),
    ];
    let vs: serde_json::Value = json!({
        "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"sources": [{"kv": {"mount": "secret", "path": "ha-freeze/app"}}], "refresh": {"interval": "1h"}},
    });
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::api::ApiResource::erase::<vaultsync::api::VaultSecret>(&()),
    );
    api.create(&PostParams::default(), &serde_json::from_value(vs).expect("object"))
        .await
        .expect("create VaultSecret");
    poll_for("the first sync", Duration::from_secs(60), async || {
        let s = secrets.get_opt("app").await.ok().flatten()?;
        (value(&s, "password").as_deref() == Some("before")).then_some(())
    })
    .await;
    let leader = poll_for("a leader", Duration::from_secs(30), async || {
        holder_of(&leases, FREEZE_LEASE).await
    })
    .await;
    let index = replicas.iter().position(|r| r.name == leader).expect("a replica leads");
    let standby = replicas[1 - index].name;

    // Frozen, as a paused VM or a stalled node would be: no renewal, no release, no exit.
    signal(&replicas[index], "STOP");
    let frozen = std::time::Instant::now();
    // Read by the new leader's first sync.
    bao(&["kv", "put", "-mount=secret", "ha-freeze/app", "password=after"]);
    poll_for("the standby to take over", Duration::from_secs(60), async || {
        holder_of(&leases, FREEZE_LEASE).await.filter(|h| h == standby)
    })
    .await;
    let took_over = frozen.elapsed();
    println!("{standby} took over {took_over:.1?} after {leader} froze");
    // The frozen leader renewed last at most one retry period (0.8 s) before it froze; its renew
    // deadline (4 s of the 6 s lease) ended before the standby could take over.
    assert!(
        took_over >= Duration::from_secs(4),
        "taken over before the frozen leader's renew deadline: {took_over:?}"
    );
    let synced = poll_for(
        "the new leader to sync the change",
        Duration::from_secs(60),
        async || {
            let s = secrets.get_opt("app").await.ok().flatten()?;
            (value(&s, "password").as_deref() == Some("after")).then_some(s)
        },
    )
    .await;

    // A sync request both replicas see: the new leader reads at once; the frozen one will find
    // it waiting when it thaws.
    let reads = || {
        let log = std::fs::read_to_string(env.dir.join("openbao-audit.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"type\":\"request\"") && l.contains("secret/data/ha-freeze/app"))
            .count()
    };
    let before = reads();
    kubectl(
        env,
        &[
            "annotate",
            "vsec",
            "app",
            "-n",
            NS,
            "vaultsync.dev/sync-requested=while-frozen",
        ],
    );
    poll_for(
        "the new leader to read at the request",
        Duration::from_secs(30),
        async || (reads() > before).then_some(()),
    )
    .await;
    let read = reads();

    // Thawed, the old leader finds its renew deadline long past: it exits without acting.
    signal(&replicas[index], "CONT");
    let exited = poll_for("the thawed leader to exit", Duration::from_secs(20), async || {
        replicas[index]
            .child
            .try_wait()
            .expect("wait")
            .map(|status| status.code())
    })
    .await;
    assert_eq!(exited, Some(1), "the thawed leader's exit status");
    assert_eq!(reads(), read, "the thawed leader read Vault");
    let log = std::fs::read_to_string(env.dir.join(format!("logs/{leader}.log"))).unwrap_or_default();
    assert!(log.contains("exiting so a fresh process stands by"), "{log}");
    let after = secrets.get("app").await.expect("Secret");
    assert_eq!(
        after.metadata.resource_version, synced.metadata.resource_version,
        "the Secret was written after the old leader thawed"
    );
    assert_eq!(
        holder_of(&leases, FREEZE_LEASE).await.as_deref(),
        Some(standby),
        "the Lease stayed with the new leader"
    );
    replicas.clear();
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_exits_at_its_renew_deadline() {
    const NS: &str = "ha-hang";
    const HANG_LEASE: &str = "vaultsync-hang";
    let env = Env::shared();
    let client = prepare(env, NS).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let api_server: SocketAddr = env
        .api_server_url()
        .trim_start_matches("https://")
        .parse()
        .expect("the API server's address");
    let proxy = Proxy::start(api_server).await;
    let kubeconfig = env.dir.join("kubeconfig-through-proxy");
    let text = std::fs::read_to_string(&env.kubeconfig).expect("kubeconfig");
    std::fs::write(
        &kubeconfig,
        text.replace(&env.api_server_url(), &format!("https://{}", proxy.addr)),
    )
    .expect("write the proxied kubeconfig");

    // The replica behind the proxy leads; the other stands by.
    let mut cut_off = start_replica_for(env, "replica-e", NS, HANG_LEASE, &kubeconfig);
    poll_for("replica-e to lead", Duration::from_secs(30), async || {
        holder_of(&leases, HANG_LEASE).await.filter(|h| h == "replica-e")
    })
    .await;
    let _standby = start_replica_for(env, "replica-f", NS, HANG_LEASE, &env.kubeconfig);

    // The API server stops answering it: every Lease call times out, and at its renew deadline
    // (4 s of the 6 s lease) it exits, before replica-f may take the Lease.
    proxy.hang(true);
    let hung = std::time::Instant::now();
    let exited = poll_for("the cut-off leader to exit", Duration::from_secs(20), async || {
        cut_off.child.try_wait().expect("wait").map(|status| status.code())
    })
    .await;
    let after = hung.elapsed();
    println!("replica-e exited {after:.1?} after the API server stopped answering it");
    assert_eq!(exited, Some(1));
    assert!(after < Duration::from_secs(6), "it outlived its lease: {after:?}");
    poll_for("replica-f to take over", Duration::from_secs(30), async || {
        holder_of(&leases, HANG_LEASE).await.filter(|h| h == "replica-f")
    })
    .await;
}
