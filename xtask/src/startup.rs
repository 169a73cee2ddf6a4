//! Starting a fresh environment: directory preparation, ports, certificates, and the control
//! plane, OpenBao and PostgreSQL started concurrently.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};

use crate::binaries::Binaries;
use crate::certs::Pki;
use crate::kube::{self, APISERVER, CONTROLLER_MANAGER, ETCD, KubePorts};
use crate::node::{self, CONTAINERD, KUBELET, NodePorts, SCHEDULER};
use crate::openbao::{self, OPENBAO};
use crate::postgres::{self, POSTGRES};
use crate::process::{Proc, reserve_port};
use crate::prometheus::PROMETHEUS;
use crate::state::State;

/// Every process of an environment, in the order they are stopped: Prometheus (started on demand,
/// it scrapes the rest), the node's (its pods use the rest), OpenBao, PostgreSQL's client, before PostgreSQL.
pub(crate) const STOP_ORDER: [&str; 9] = [
    PROMETHEUS,
    KUBELET,
    SCHEDULER,
    CONTAINERD,
    CONTROLLER_MANAGER,
    APISERVER,
    ETCD,
    OPENBAO,
    POSTGRES,
];

/// Stops every process of the environment in `dir` with `stop`, in [`STOP_ORDER`], and removes
/// the node's containers and mounts once its kubelet is gone. Stops all it can; returns the first
/// error.
pub(crate) fn stop_all(dir: &Path, mut stop: impl FnMut(&'static str) -> Result<()>) -> Result<()> {
    let mut first_error = None;
    for name in STOP_ORDER {
        let mut result = stop(name);
        if name == CONTAINERD {
            result = result.and(node::teardown(dir));
        }
        if let Err(err) = result {
            eprintln!("stopping {name}: {err:#}");
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Files and directories of an environment directory; only these are removed before a start.
const ENV_ENTRIES: [&str; 13] = [
    "node",
    "prometheus",
    "etcd",
    "openbao",
    "postgres",
    "pki",
    "apiserver",
    "controller-manager",
    "pids",
    "logs",
    "kubeconfig",
    "env.json",
    "env.sh",
];

/// Test environment directories are `TMPDIR/vaultsync-env-PID`.
const TEST_DIR_PREFIX: &str = "vaultsync-env-";

/// Starts every process in `dir` (prepared by [`prepare_dir`]) and waits until all are ready.
/// On failure, processes already started are left for the caller to stop.
pub(crate) fn start_all(
    dir: &Path,
    binaries: &Binaries,
    detached: bool,
    with_node: bool,
) -> Result<(State, HashMap<&'static str, Proc>)> {
    // Hold all listeners until every port is chosen, so the ports differ.
    let mut held = Vec::new();
    let mut port = || -> Result<u16> {
        let (port, listener) = reserve_port()?;
        held.push(listener);
        Ok(port)
    };
    let ports = KubePorts {
        etcd_client: port()?,
        etcd_peer: port()?,
        apiserver: port()?,
        controller_manager: port()?,
    };
    let openbao_port = port()?;
    let openbao_cluster_port = port()?;
    let postgres_port = port()?;
    let node_ports = NodePorts {
        scheduler: port()?,
        kubelet: port()?,
        kubelet_healthz: port()?,
    };
    drop(held);

    let api_server_url = format!("https://127.0.0.1:{}", ports.apiserver);
    let kubeconfig = kube::kubeconfig_path(dir);
    let pki = Pki::at(dir);
    pki.generate()?;
    pki.write_kubeconfig(&kubeconfig, &api_server_url)?;
    openbao::write_config(dir, openbao_port, openbao_cluster_port)?;

    let (kube_procs, bao_proc, pg_proc) = thread::scope(|scope| {
        let bao = scope.spawn(|| -> Result<Proc> {
            let mut proc = openbao::start(dir, binaries, openbao_port, detached)?;
            let keys = openbao::initialize(dir, openbao_port)?;
            openbao::unseal(&mut proc, openbao_port, &keys)?;
            openbao::mount_kv(&mut proc, openbao_port, &keys.root_token)?;
            openbao::setup_pki(openbao_port, &keys.root_token)?;
            Ok(proc)
        });
        let pg = scope.spawn(|| -> Result<(Proc, PathBuf)> {
            let pg_dir = postgres::initialize(dir, binaries)?;
            let proc = postgres::start(dir, &pg_dir, binaries, postgres_port, detached)?;
            Ok((proc, pg_dir))
        });
        let kube = (|| -> Result<[Proc; 3]> {
            let etcd = kube::start_etcd(dir, binaries, ports, detached)?;
            let apiserver = kube::start_apiserver(dir, binaries, ports, &kubeconfig, detached)?;
            let kcm = kube::start_controller_manager(dir, binaries, ports, &kubeconfig, detached)?;
            Ok([etcd, apiserver, kcm])
        })();
        let bao = bao
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the OpenBao start-up thread panicked")));
        let pg = pg
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the PostgreSQL start-up thread panicked")));
        (kube, bao, pg)
    });
    let ([etcd, apiserver, kcm], bao, (pg, postgres_dir)) = match (kube_procs, bao_proc, pg_proc) {
        (Ok(kube), Ok(bao), Ok(pg)) => (kube, bao, pg),
        (kube, bao, pg) => {
            let errors = [
                kube.err().map(|e| e.context("the control plane failed")),
                bao.err().map(|e| e.context("OpenBao failed")),
                pg.err().map(|e| e.context("PostgreSQL failed")),
            ];
            let mut errors = errors.into_iter().flatten();
            let first = errors.next().unwrap_or_else(|| anyhow!("start-up failed"));
            return Err(errors.fold(first, |err, also| err.context(format!("also, {also:#}"))));
        }
    };
    let mut procs = HashMap::from([
        (ETCD, etcd),
        (APISERVER, apiserver),
        (CONTROLLER_MANAGER, kcm),
        (OPENBAO, bao),
        (POSTGRES, pg),
    ]);
    if with_node {
        // After the control plane: the kubelet registers the node with the API server.
        let [containerd, scheduler, kubelet] =
            node::start(dir, binaries, node_ports, &kubeconfig, detached).context("the node failed")?;
        procs.extend([(CONTAINERD, containerd), (SCHEDULER, scheduler), (KUBELET, kubelet)]);
    }
    let state = State {
        api_server_url,
        openbao_port,
        postgres_port,
        etcd_port: ports.etcd_client,
        postgres_dir,
        detached,
        node: with_node,
        binaries: binaries.clone(),
    };
    Ok((state, procs))
}

/// Refuses a directory whose environment still runs; removes the data of a previous one.
pub(crate) fn prepare_dir(dir: &Path) -> Result<()> {
    for name in STOP_ORDER {
        if let Some(proc) = Proc::from_pid_file(dir, name)? {
            bail!(
                "{name} (pid {}) of a previous environment still runs in {}; \
                 stop it with `cargo xtask env down`",
                proc.pid(),
                dir.display()
            );
        }
    }
    postgres::remove_leftovers(dir)?;
    for entry in ENV_ENTRIES {
        let path = dir.join(entry);
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// A fresh directory for this test process's environment, after removing those left by test
/// processes that have exited (their processes died with them).
pub(crate) fn test_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TEST_DIR_PREFIX)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = postgres::remove_leftovers(&entry.path());
                // Its node's containers outlive it (their shims are containerd's, not its children).
                let _ = node::teardown(&entry.path());
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    tmp.join(format!("{TEST_DIR_PREFIX}{}", std::process::id()))
}
