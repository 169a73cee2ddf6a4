//! One row of the fault matrix: a namespace with a KV, a dynamic PostgreSQL and a PKI VaultSecret,
//! each restarting a Deployment of its own, synced and rotating (KV values changed every 3 s,
//! database leases of 8 s renewable to 24 s, certificates of 20 s), an operator process reaching
//! OpenBao through a loopback proxy, and a recorder of everything the invariants need: every
//! version of every Secret, every restart annotation, every lease the statuses name, and every
//! lease OpenBao holds for the row.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sha2::{Digest, Sha256};
use vaultsync::api::VaultSecret;
use xtask::Env;

use crate::common::proxy::Proxy;
use crate::common::replica::{Replica, prepare, start_replica_with};
use crate::common::{Bao, db, is_ready};

/// The three VaultSecrets of a row, their Secrets' expected keys, and their Deployments.
pub const KINDS: [(&str, &[&str]); 3] = [
    ("kv", &["password"]),
    ("db", &["username", "password"]),
    ("cert", &["tls.crt", "tls.key"]),
];

pub struct Row {
    pub env: &'static Env,
    pub name: &'static str,
    pub ns: String,
    pub client: kube::Client,
    pub bao: Bao,
    pub proxy: Proxy,
    pub operator: Replica,
    /// KV values written so far.
    pub kv_version: u32,
    /// Times the operator exited on its own (a leader that cannot renew its Lease stops) and was
    /// started again, as its Deployment would.
    pub exits: u32,
    recorder: Option<Recorder>,
}

/// What the recorder saw.
#[derive(Default)]
struct Seen {
    /// Per Secret: its successive contents (hash), and whether any version lacked a key.
    secrets: BTreeMap<String, (Vec<String>, bool)>,
    /// Per Deployment: its successive restart annotations.
    restarts: BTreeMap<String, Vec<String>>,
    /// Every lease any status named (current or pending revocation).
    leases: BTreeSet<String>,
    /// Every lease OpenBao held for the row's role at some sample.
    live: BTreeSet<String>,
}

struct Recorder {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Issues in OpenBao's audit log when recording started: (database, PKI).
    issued_before: (usize, usize),
    /// Leases the statuses named when recording started.
    leases_before: usize,
}

/// The row's results, one per invariant.
pub struct Verdict {
    pub never_emptied_or_reverted: Result<(), String>,
    pub leases_recorded_and_revoked: Result<(), String>,
    pub one_issue_per_rotation: Result<(), String>,
    /// No restart beyond the Secret's changes, none missing for its last content.
    pub no_extra_restart: Result<(), String>,
    pub recovery: Result<Duration, String>,
    /// What happened during the row: Secret versions, issues, restarts.
    pub activity: String,
}

fn hash(secret: &Secret) -> String {
    let data = secret.data.clone().unwrap_or_default();
    let text: Vec<String> = data.iter().map(|(k, v)| format!("{k}={}", hex::encode(&v.0))).collect();
    hex::encode(Sha256::digest(text.join("\n").as_bytes()))
}

/// Appends `value` unless it is the last one already.
fn push_new(list: &mut Vec<String>, value: String) {
    if list.last() != Some(&value) {
        list.push(value);
    }
}

impl Row {
    /// Sets up the row `name` in namespace `faults-<name>` and waits until all three are Ready.
    pub async fn start(env: &'static Env, name: &'static str) -> Row {
        let ns = format!("faults-{name}");
        let client = prepare(env, &ns).await;
        let bao = Bao::new(env);
        let target = env
            .vault_addr
            .trim_start_matches("http://")
            .parse()
            .expect("OpenBao address");
        let proxy = Proxy::start(target).await;
        let path = db::role(&bao, &ns, "8s", "24s");
        bao.run(&[
            "write",
            &format!("pki/roles/{ns}"),
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "key_type=ec",
            "key_bits=256",
            "max_ttl=1h",
        ]);
        bao.put(&format!("{ns}/app"), &[("password", "v0")]);
        let operator = start_operator(env, name, &ns, &proxy);
        let mut row = Row {
            env,
            name,
            ns,
            client,
            bao,
            proxy,
            operator,
            kv_version: 0,
            exits: 0,
            recorder: None,
        };
        row.create(&path).await;
        row.wait_ready(Duration::from_secs(120)).await.expect("the first syncs");
        row
    }

    /// Arms the operator's crash point `step`: it aborts the next time it gets there (and is
    /// started again by the churn, as its Deployment would).
    pub fn arm_crash(&self, step: vaultsync::crashpoint::Step) {
        let file = crash_file(self.env, self.name);
        std::fs::write(file, step.name()).expect("arm the crash point");
    }

    /// Whether the armed crash point was reached (the operator removes the file as it aborts);
    /// disarms it.
    pub fn crashed(&self) -> bool {
        let file = crash_file(self.env, self.name);
        let reached = !file.exists();
        let _ = std::fs::remove_file(file);
        reached
    }

    /// Starts the operator again after it died (as its Deployment would).
    pub fn restart_operator(&mut self) {
        self.operator = start_operator(self.env, self.name, &self.ns, &self.proxy);
    }

    /// SIGKILLs every `vaultsync render-templates` child of the operator for `length`, looking
    /// every millisecond; returns how many it killed.
    pub async fn kill_renderers(&mut self, length: Duration) -> usize {
        let pid = self.operator.child.id();
        let end = Instant::now() + length;
        let mut killed = std::collections::HashSet::new();
        let mut last_bump = Instant::now();
        while Instant::now() < end {
            for child in children(pid) {
                let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                if cmdline.split(|b| *b == 0).any(|arg| arg == b"render-templates") {
                    // SAFETY: a plain syscall on a pid read from /proc just now.
                    unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) };
                    killed.insert(child);
                }
            }
            if last_bump.elapsed() > Duration::from_secs(3) {
                last_bump = Instant::now();
                self.bump_kv();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        killed.len()
    }

    /// Starts the operator again if it exited, as its Deployment would.
    fn revive(&mut self) {
        if matches!(self.operator.child.try_wait(), Ok(Some(_))) {
            self.exits += 1;
            self.restart_operator();
        }
    }

    async fn create(&self, path: &str) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let vaultsecrets: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &ApiResource::erase::<VaultSecret>(&()));
        let sources = [
            json!({"kv": {"mount": "secret", "path": format!("{}/app", self.ns)}}),
            json!({"dynamic": {"mount": db::MOUNT, "path": path}}),
            json!({"pki": {"mount": "pki", "role": self.ns, "commonName": "app.example.test", "ttl": "20s"}}),
        ];
        for ((kind, _), source) in KINDS.iter().zip(sources) {
            let deployment = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("app-{kind}")},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": kind}},
                    "template": {"metadata": {"labels": {"app": kind}},
                        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app"}]}},
                },
            });
            deployments
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(deployment).expect("Deployment"),
                )
                .await
                .expect("create Deployment");
            let mut spec = json!({
                "sources": [source],
                "refresh": {"interval": "10s", "revokeGracePeriod": "4s"},
                "rollout": {"targets": [{"kind": "Deployment", "name": format!("app-{kind}")}], "debounce": "1s"},
            });
            if *kind == "kv" {
                // Rendered in a child process on every sync: what the renderer row kills.
                spec["destination"] = json!({"templates": {"url": "kv://{{ password }}"}});
            }
            if *kind == "cert" {
                spec["destination"] = json!({"type": "kubernetes.io/tls"});
            }
            let vs = json!({
                "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
                "metadata": {"name": kind}, "spec": spec,
            });
            vaultsecrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(vs).expect("VaultSecret"),
                )
                .await
                .expect("create VaultSecret");
        }
    }

    /// Waits until all three are Ready and the KV Secret holds the last value written.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let vaultsecrets: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let want = format!("v{}", self.kv_version);
        while started.elapsed() < limit {
            self.revive();
            let ready = async {
                let all = vaultsecrets.list(&ListParams::default()).await.ok()?;
                let ready = all.items.iter().filter(|vs| is_ready(vs)).count();
                let kv = secrets.get_opt("kv").await.ok().flatten()?;
                Some(ready == KINDS.len() && crate::common::value(&kv, "password") == Some(want.clone()))
            };
            if tokio::time::timeout(Duration::from_secs(5), ready).await == Ok(Some(true)) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("not Ready with the last KV value within {limit:?}"))
    }

    /// Writes the next KV value (OpenBao may refuse while faulty; the value is then not counted).
    pub fn bump_kv(&mut self) {
        let next = self.kv_version + 1;
        let ok = self
            .env
            .bao()
            .env("BAO_CLIENT_TIMEOUT", "3s")
            .args([
                "kv",
                "put",
                "-mount=secret",
                &format!("{}/app", self.ns),
                &format!("password=v{next}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            self.kv_version = next;
        }
    }

    /// Keeps the KV value changing for `length`, doing nothing else (rotations happen on their own).
    pub async fn churn(&mut self, length: Duration) {
        let end = Instant::now() + length;
        while Instant::now() < end {
            self.revive();
            self.bump_kv();
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }

    /// Issues of the row's database role and PKI role in OpenBao's audit log.
    fn issued(&self) -> (usize, usize) {
        let responses = self.bao.audit_responses();
        let count = |path: &str| {
            responses
                .iter()
                .filter(|e| e["request"]["path"] == path && e["error"].is_null())
                .count()
        };
        (
            count(&format!("{}/creds/{}", db::MOUNT, self.ns)),
            count(&format!("pki/issue/{}", self.ns)),
        )
    }

    /// Leases OpenBao holds for the row's database role.
    fn live_leases(env: &Env, ns: &str) -> Option<BTreeSet<String>> {
        let prefix = format!("{}/creds/{ns}/", db::MOUNT);
        let out = env
            .bao()
            .env("BAO_CLIENT_TIMEOUT", "3s")
            .args(["list", "-format=json", &format!("sys/leases/lookup/{prefix}")])
            .output()
            .ok()?;
        if !out.status.success() {
            // No lease at all is "no such path"; a sealed or hung OpenBao is no sample.
            let text = String::from_utf8_lossy(&out.stderr);
            return text.contains("No value found").then(BTreeSet::new);
        }
        let ids: Vec<String> = serde_json::from_slice(&out.stdout).ok()?;
        Some(ids.into_iter().map(|id| format!("{prefix}{id}")).collect())
    }

    /// Starts recording.
    pub async fn record(&mut self) {
        let vaultsecrets: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let all = vaultsecrets
            .list(&ListParams::default())
            .await
            .expect("list VaultSecrets");
        let leases_before = all
            .items
            .iter()
            .filter_map(|vs| vs.status.as_ref())
            .map(|s| s.sources.iter().filter(|s| s.lease.is_some()).count() + s.pending_revocations.len())
            .sum();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = watcher(secrets, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(next) = stream.next().await {
                let Ok(secret) = next else { continue };
                let name = secret.metadata.name.clone().unwrap_or_default();
                let Some((_, keys)) = KINDS.iter().find(|(kind, _)| *kind == name) else {
                    continue;
                };
                let data = secret.data.clone().unwrap_or_default();
                let lacks = keys.iter().any(|k| data.get(*k).is_none_or(|v| v.0.is_empty()));
                let mut seen = s.lock().expect("seen");
                let entry = seen.secrets.entry(name).or_default();
                push_new(&mut entry.0, hash(&secret));
                entry.1 |= lacks;
            }
        }));
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = watcher(deployments, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(next) = stream.next().await {
                let Ok(d) = next else { continue };
                let name = d.metadata.name.clone().unwrap_or_default();
                let annotations = d
                    .spec
                    .and_then(|s| s.template.metadata)
                    .and_then(|m| m.annotations)
                    .unwrap_or_default();
                let marks: Vec<String> = annotations
                    .iter()
                    .filter(|(k, _)| k.starts_with("vaultsync.dev/secret."))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                push_new(
                    s.lock().expect("seen").restarts.entry(name).or_default(),
                    marks.join(","),
                );
            }
        }));
        let vaultsecrets: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = watcher(vaultsecrets, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(next) = stream.next().await {
                let Ok(vs) = next else { continue };
                let status = vs.status.unwrap_or_default();
                let current = status
                    .sources
                    .iter()
                    .filter_map(|s| s.lease.as_ref())
                    .map(|l| l.id.clone());
                let pending = status.pending_revocations.iter().map(|p| p.lease_id.clone());
                s.lock().expect("seen").leases.extend(current.chain(pending));
            }
        }));
        let (env, ns, s) = (self.env, self.ns.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let sample = tokio::task::spawn_blocking({
                    let ns = ns.clone();
                    move || Row::live_leases(env, &ns)
                })
                .await
                .ok()
                .flatten();
                if let Some(live) = sample {
                    s.lock().expect("seen").live.extend(live);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
        self.recorder = Some(Recorder {
            seen,
            tasks,
            issued_before: self.issued(),
            leases_before,
        });
    }

    /// The Deployments not restarted for their Secret's last content half a minute after
    /// recovery (the restart annotation is the VaultSecret's `secretHash`).
    async fn unrestarted(&self) -> Vec<String> {
        let vaultsecrets: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let mut missed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            missed.clear();
            for (kind, _) in KINDS {
                let hash = vaultsecrets
                    .get(kind)
                    .await
                    .ok()
                    .and_then(|vs| vs.status)
                    .and_then(|s| s.secret_hash);
                let mark = deployments.get(&format!("app-{kind}")).await.ok().and_then(|d| {
                    let annotations = d.spec?.template.metadata?.annotations?;
                    annotations.get(&format!("vaultsync.dev/secret.{kind}")).cloned()
                });
                if hash.is_none() || hash != mark {
                    missed.push(format!("app-{kind} not restarted for the last content"));
                }
            }
            if missed.is_empty() || Instant::now() > deadline {
                return missed;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Ends the row once recovered: waits until OpenBao holds no lease but the current ones, stops
    /// recording and judges every invariant.
    pub async fn verdict(&mut self, recovery: Result<Duration, String>) -> Verdict {
        let recorder = self.recorder.take().expect("recording");
        let vaultsecrets: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let current = || async {
            let db = vaultsecrets.get("db").await.ok()?;
            let status = db.status?;
            let current: BTreeSet<String> = status
                .sources
                .iter()
                .filter_map(|s| s.lease.as_ref())
                .map(|l| l.id.clone())
                .collect();
            Some((current, status.pending_revocations.is_empty()))
        };
        let settle = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let (Some((current, true)), Some(live)) = (current().await, Row::live_leases(self.env, &self.ns))
                    && current == live
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        let live_at_end = Row::live_leases(self.env, &self.ns).unwrap_or_default();
        let missed = self.unrestarted().await;
        // Deleted, the VaultSecrets issue nothing more: the audit log and the statuses can be
        // compared without a rotation racing the count.
        let api: Api<VaultSecret> = Api::namespaced(self.client.clone(), &self.ns);
        let _ = api.delete_collection(&Default::default(), &ListParams::default()).await;
        let gone = tokio::time::timeout(Duration::from_secs(60), async {
            while api
                .list(&ListParams::default())
                .await
                .map_or(true, |l| !l.items.is_empty())
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "the row's VaultSecrets were not deleted within a minute");
        // Last watch events in.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for task in &recorder.tasks {
            task.abort();
        }
        let issued_after = self.issued();
        let seen = recorder.seen.lock().expect("seen");

        let mut broken = Vec::new();
        for (name, (versions, lacked)) in &seen.secrets {
            if *lacked {
                broken.push(format!("{name} had a version without its keys"));
            }
            let distinct: BTreeSet<&String> = versions.iter().collect();
            if distinct.len() != versions.len() {
                broken.push(format!("{name} went back to an earlier content"));
            }
        }
        let never_emptied_or_reverted = if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        };

        let unrecorded: Vec<&String> = seen.live.iter().filter(|l| !seen.leases.contains(*l)).collect();
        let leases_recorded_and_revoked = if !unrecorded.is_empty() {
            Err(format!("leases no status named: {unrecorded:?}"))
        } else if settle.is_err() {
            Err(format!(
                "still live a minute after recovery beyond the current lease: {live_at_end:?}"
            ))
        } else {
            Ok(())
        };

        let issued = (
            issued_after.0 - recorder.issued_before.0,
            issued_after.1 - recorder.issued_before.1,
        );
        let recorded = seen.leases.len().saturating_sub(recorder.leases_before);
        let one_issue_per_rotation = if issued.0 + issued.1 == recorded {
            Ok(())
        } else {
            Err(format!(
                "{} database and {} PKI issues for {recorded} leases recorded",
                issued.0, issued.1
            ))
        };

        let mut extra = missed;
        for (kind, _) in KINDS {
            let restarts = seen
                .restarts
                .get(&format!("app-{kind}"))
                .map_or(0, |v| v.len().saturating_sub(1));
            let changes = seen.secrets.get(kind).map_or(0, |v| v.0.len().saturating_sub(1));
            if restarts > changes {
                extra.push(format!("app-{kind}: {restarts} restarts for {changes} changes"));
            }
        }
        let no_extra_restart = if extra.is_empty() {
            Ok(())
        } else {
            Err(extra.join("; "))
        };
        let versions: usize = seen.secrets.values().map(|v| v.0.len().saturating_sub(1)).sum();
        let restarts: usize = seen.restarts.values().map(|v| v.len().saturating_sub(1)).sum();
        let exits = match self.exits {
            0 => String::new(),
            n => format!("; the operator exited {n} time(s) and was started again"),
        };
        let activity = format!(
            "{versions} new Secret versions, {} database leases and {} certificates issued, {restarts} restarts{exits}",
            issued.0, issued.1
        );
        Verdict {
            activity,
            never_emptied_or_reverted,
            leases_recorded_and_revoked,
            one_issue_per_rotation,
            no_extra_restart,
            recovery,
        }
    }
}

/// The children of process `pid` (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// An operator process for row `name`, reaching OpenBao through `proxy`.
fn start_operator(env: &Env, name: &'static str, ns: &str, proxy: &Proxy) -> Replica {
    let address = format!("http://{}", proxy.addr);
    let lease = format!("faults-{name}");
    let crash_file = crash_file(env, name);
    start_replica_with(
        env,
        name,
        ns,
        &lease,
        &env.kubeconfig,
        &[
            ("VAULTSYNC_VAULT_ADDRESS", &address),
            ("VAULTSYNC_VAULT_TIMEOUT", "5s"),
            ("VAULTSYNC_CRASH_FILE", &crash_file.to_string_lossy()),
        ],
    )
}

/// The file that arms the operator's crash points (`vaultsync::crashpoint`) in row `name`.
fn crash_file(env: &Env, name: &str) -> std::path::PathBuf {
    env.dir.join(format!("crash-{name}"))
}

impl Verdict {
    /// The row of the matrix (Markdown), and whether every invariant held.
    pub fn line(&self, fault: &str) -> (String, bool) {
        let mark = |r: &Result<(), String>| match r {
            Ok(()) => "held".to_owned(),
            Err(e) => format!("**broken**: {e}"),
        };
        let recovery = match &self.recovery {
            Ok(d) => format!("{:.0} s", d.as_secs_f64()),
            Err(e) => format!("**none**: {e}"),
        };
        let ok = self.never_emptied_or_reverted.is_ok()
            && self.leases_recorded_and_revoked.is_ok()
            && self.one_issue_per_rotation.is_ok()
            && self.no_extra_restart.is_ok()
            && self.recovery.is_ok();
        let line = format!(
            "| {fault} | {} | {} | {} | {} | {recovery} | {} |",
            mark(&self.never_emptied_or_reverted),
            mark(&self.leases_recorded_and_revoked),
            mark(&self.one_issue_per_rotation),
            mark(&self.no_extra_restart),
            self.activity,
        );
        (line, ok)
    }
}
