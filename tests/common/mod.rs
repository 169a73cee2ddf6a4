//! Shared end-to-end harness: one local environment and one in-process operator per test binary,
//! and a fresh namespace per test.

#![allow(dead_code, unused_imports)]
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod argocd;
pub mod auth;
pub mod cluster;
pub mod db;
pub mod handover;
mod logs;
mod operator;
pub mod pods;
pub mod proxy;
pub mod replica;
mod restart;
pub mod tls;
mod vault;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Resource};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use vaultsync::api::VaultSecret;

pub use logs::captured_logs;
pub use operator::{OPERATOR_NS, Operator, kubectl, kubectl_apply, operator, operator_with};
pub use restart::restart_operator;
pub use vault::Bao;

/// Generous bound for anything event-driven: the machine is shared and slow under load.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// One test's view: a client on the test's own runtime and a namespace of its own.
pub struct TestNs {
    pub client: Client,
    pub ns: String,
    pub op: &'static Operator,
}

impl TestNs {
    /// Starts (once) the environment and operator, and creates namespace `<prefix>-<random>`.
    pub async fn new(prefix: &str) -> TestNs {
        TestNs::new_in(operator(), prefix).await
    }

    /// Creates namespace `<prefix>-<random>` for a binary whose operator was started by
    /// [`operator_with`].
    pub async fn new_in(op: &'static Operator, prefix: &str) -> TestNs {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase();
        TestNs::create(op, format!("{prefix}-{suffix}"), false).await
    }

    /// Namespace `name` exactly (for names the operator's settings refer to). It may exist
    /// already, from another test or an earlier run against the same environment: use unique
    /// names inside it, e.g. [`TestNs::path`] with a random leaf.
    pub async fn fixed_in(op: &'static Operator, name: &str) -> TestNs {
        TestNs::create(op, name.to_owned(), true).await
    }

    async fn create(op: &'static Operator, ns: String, may_exist: bool) -> TestNs {
        let client = op.client().await;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if may_exist && e.code == 409 => {}
            Err(e) => panic!("create test namespace {ns}: {e}"),
        }
        TestNs { client, ns, op }
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn vaultsecrets(&self) -> Api<VaultSecret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn service_accounts(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates ServiceAccount `name` in this namespace.
    pub async fn create_service_account(&self, name: &str) -> ServiceAccount {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.service_accounts()
            .create(&PostParams::default(), &sa)
            .await
            .unwrap_or_else(|e| panic!("create ServiceAccount {name}: {e}"))
    }

    /// Creates or replaces Secret `name` holding `pairs` (server-side apply, field manager `tests`).
    pub async fn apply_secret(&self, name: &str, pairs: &[(&str, &str)]) -> Secret {
        let data = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        self.secrets()
            .patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&secret))
            .await
            .unwrap_or_else(|e| panic!("apply Secret {name}: {e}"))
    }

    /// Creates a VaultSecret from raw JSON (so invalid manifests can be sent as they are).
    pub async fn create_vs(&self, name: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
        let gvk = GroupVersionKind::gvk(
            VaultSecret::group(&()).as_ref(),
            VaultSecret::version(&()).as_ref(),
            VaultSecret::kind(&()).as_ref(),
        );
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        let mut obj = DynamicObject::new(name, &ar).within(&self.ns);
        obj.data = serde_json::json!({ "spec": spec });
        api.create(&PostParams::default(), &obj).await
    }

    /// Deletes VaultSecret `name` and waits until it is gone (finalizers done). Tests whose
    /// VaultSecrets keep rotating end with it, so they stop before another test counts changes.
    pub async fn delete_vs(&self, name: &str) {
        let api = self.vaultsecrets();
        let Some(vs) = api.get_opt(name).await.expect("get VaultSecret") else {
            return;
        };
        api.delete(name, &kube::api::DeleteParams::default())
            .await
            .expect("delete VaultSecret");
        let uid = vs.metadata.uid.clone().unwrap_or_default();
        within(
            &format!("{name} to be deleted"),
            await_condition(api, name, kube::runtime::wait::conditions::is_deleted(&uid)),
        )
        .await
        .expect("watch VaultSecret");
    }

    /// The first core/v1 Event with `reason` in this namespace; panics when there is none.
    pub async fn event(&self, reason: &str) -> k8s_openapi::api::core::v1::Event {
        self.events(reason)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {reason} Event in {}", self.ns))
    }

    /// Every Event with `reason` in the namespace.
    pub async fn events(&self, reason: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(self.client.clone(), &self.ns)
            .list(&kube::api::ListParams::default())
            .await
            .expect("list Events");
        events
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// Waits (watch-based, bounded by [`EVENTUALLY`]) until the Secret satisfies `cond`.
    pub async fn wait_secret(&self, name: &str, what: &str, cond: impl Condition<Secret>) -> Secret {
        within(what, await_condition(self.secrets(), name, cond))
            .await
            .expect("watch Secret")
            .expect("Secret exists")
    }

    /// Waits until the VaultSecret satisfies `cond`.
    pub async fn wait_vs(&self, name: &str, what: &str, cond: impl Condition<VaultSecret>) -> VaultSecret {
        within(what, await_condition(self.vaultsecrets(), name, cond))
            .await
            .expect("watch VaultSecret")
            .expect("VaultSecret exists")
    }

    /// Waits up to `limit` until the VaultSecret exists and satisfies `cond`.
    pub async fn wait_vs_for(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        cond: impl Fn(&VaultSecret) -> bool,
    ) -> VaultSecret {
        let cond = move |vs: Option<&VaultSecret>| vs.is_some_and(&cond);
        within_for(limit, what, await_condition(self.vaultsecrets(), name, cond))
            .await
            .expect("watch VaultSecret")
            .expect("VaultSecret exists")
    }

    /// Waits up to `limit` until the Secret exists and satisfies `cond`.
    pub async fn wait_secret_for(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        cond: impl Fn(&Secret) -> bool,
    ) -> Secret {
        let cond = move |s: Option<&Secret>| s.is_some_and(&cond);
        within_for(limit, what, await_condition(self.secrets(), name, cond))
            .await
            .expect("watch Secret")
            .expect("Secret exists")
    }

    /// Waits until the VaultSecret's Ready condition has `status` and `reason`; on timeout the
    /// panic shows the condition it has instead.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> VaultSecret {
        let (s, r) = (status.to_owned(), reason.to_owned());
        let cond = move |vs: Option<&VaultSecret>| {
            vs.and_then(|vs| vs.status.as_ref()?.ready().cloned())
                .is_some_and(|c| c.status == s && c.reason == r)
        };
        match tokio::time::timeout(EVENTUALLY, await_condition(self.vaultsecrets(), name, cond)).await {
            Ok(vs) => vs.expect("watch VaultSecret").expect("VaultSecret exists"),
            Err(_) => panic!(
                "timed out after {EVENTUALLY:?} waiting for {name} Ready={status} {reason}; it is {}",
                self.ready_of(name).await
            ),
        }
    }

    /// The VaultSecret's Ready condition as `Ready=STATUS REASON: MESSAGE`, for failure messages.
    pub async fn ready_of(&self, name: &str) -> String {
        match self.vaultsecrets().get_opt(name).await {
            Ok(Some(vs)) => match vs.status.as_ref().and_then(|s| s.ready()) {
                Some(c) => format!("Ready={} {}: {}", c.status, c.reason, c.message),
                None => "without a Ready condition".to_owned(),
            },
            Ok(None) => "absent".to_owned(),
            Err(e) => format!("unreadable ({e})"),
        }
    }

    /// `kubectl` in this namespace; returns stdout, panics with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self
            .op
            .env
            .kubectl()
            .arg("-n")
            .arg(&self.ns)
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded poll of OpenBao's audit log, up to 60 s) until the operator has read the KV v2
    /// secret at `secret/<path>` `more` more times: proof that refreshes happened.
    pub async fn wait_reads(&self, path: &str, more: usize) {
        let api_path = format!("secret/data/{path}");
        let target = self.op.bao.requests_for(&api_path) + more;
        within_for(
            Duration::from_secs(60),
            &format!("{more} more reads of {api_path}"),
            async {
                while self.op.bao.requests_for(&api_path) < target {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            },
        )
        .await;
    }

    /// A unique KV path for this test.
    pub fn path(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.ns)
    }
}

/// Whether `vs` reports Ready=True.
pub fn is_ready(vs: &VaultSecret) -> bool {
    vs.status
        .as_ref()
        .and_then(|s| s.ready())
        .is_some_and(|c| c.status == "True")
}

/// Awaits `fut` for at most [`EVENTUALLY`], panicking with `what` on timeout.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(EVENTUALLY, what, fut).await
}

/// Polls `check` every 250 ms until it gives a value, for at most `limit` (for state that has no
/// watch: a Lease holder, the audit log, a process).
pub async fn poll_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Awaits `fut` for at most `limit`, panicking with `what` on timeout.
pub async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for: {what}"),
    }
}

/// A loopback port nothing listens on right now (for a process the test starts).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// A Secret's value for `key` as text.
pub fn value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Condition: the Secret exists and `key` holds `want`.
pub fn has_value(key: &'static str, want: &str) -> impl Condition<Secret> {
    let want = want.to_owned();
    move |s: Option<&Secret>| s.is_some_and(|s| value(s, key).as_deref() == Some(want.as_str()))
}
