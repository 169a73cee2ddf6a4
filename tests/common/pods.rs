//! Pods on the node: who runs, what they printed (read from the kubelet's log files, as
//! `kubectl logs` cannot reach a node without an address), and the ReplicaSets of a Deployment.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::wait::await_condition;
use vaultsync::api::VaultSecret;

use super::cluster::{POD_TIMEOUT, tools_image};
use super::{TestNs, within_for};

/// A Deployment `ns/name` of one pod of the tools image (host network, the image imported, never pulled)
/// running `script` with `sh -c`; `container_extra` and `pod_extra` are YAML lines added to the
/// container and the pod spec (envFrom, volumeMounts; volumes).
pub fn tools_deployment(ns: &str, name: &str, script: &str, container_extra: &str, pod_extra: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      automountServiceAccountToken: false
      containers:
        - name: main
          image: {image}
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", {script:?}]
{container_extra}
{pod_extra}
"#,
        image = tools_image(),
    )
}

impl TestNs {
    /// Waits up to `limit` until Secret `name` exists and satisfies `cond`.
    pub async fn wait_secret_for(
        &self,
        limit: Duration,
        name: &str,
        what: &str,
        cond: impl Fn(&Secret) -> bool,
    ) -> Secret {
        let condition = move |s: Option<&Secret>| s.is_some_and(&cond);
        within_for(limit, what, await_condition(self.secrets(), name, condition))
            .await
            .expect("watch Secret")
            .expect("Secret exists")
    }

    /// Waits up to `limit` until VaultSecret `name` exists and satisfies `cond`.
    pub async fn wait_vs_for(
        &self,
        limit: Duration,
        name: &str,
        what: &str,
        cond: impl Fn(&VaultSecret) -> bool,
    ) -> VaultSecret {
        let condition = move |vs: Option<&VaultSecret>| vs.is_some_and(&cond);
        within_for(limit, what, await_condition(self.vaultsecrets(), name, condition))
            .await
            .expect("watch VaultSecret")
            .expect("VaultSecret exists")
    }

    /// Names of the running pods with label `app=<app>`.
    pub fn pods(&self, app: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace().map(str::to_owned).collect()
    }

    /// Names of every pod with label `app=<app>`, whatever its phase.
    pub fn all_pods(&self, app: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace().map(str::to_owned).collect()
    }

    /// Names of the ReplicaSets with label `app=<app>`.
    pub fn replica_sets(&self, app: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "replicasets",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace().map(str::to_owned).collect()
    }

    /// What container `main` of `pod` printed so far (the text of each line, without the CRI
    /// prefix).
    pub fn printed(&self, pod: &str) -> Vec<String> {
        self.op
            .env
            .container_log(&self.ns, pod, "main")
            .lines()
            .filter_map(|line| line.splitn(4, ' ').nth(3).map(str::to_owned))
            .collect()
    }

    /// Polls (every 250 ms, up to `limit`) until `pod` has printed `line`; returns how long it took.
    pub async fn wait_printed(&self, pod: &str, line: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        while !self.printed(pod).iter().any(|l| l == line) {
            if started.elapsed() > limit {
                panic!(
                    "{pod} did not print {line:?} within {limit:?}; it printed:\n{}",
                    self.printed(pod).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        started.elapsed()
    }

    /// Waits until exactly one pod of `app` runs, other than those in `not`; returns its name.
    pub async fn wait_one_pod(&self, app: &str, not: &[String]) -> String {
        let started = Instant::now();
        loop {
            let pods: Vec<String> = self.pods(app).into_iter().filter(|p| !not.contains(p)).collect();
            if let [pod] = pods.as_slice() {
                return pod.clone();
            }
            if started.elapsed() > POD_TIMEOUT {
                panic!(
                    "no single new running pod of {app} within {POD_TIMEOUT:?}: {}",
                    self.kubectl(&["get", "pods", "-o", "wide"])
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `pod` no longer exists.
    pub async fn wait_pod_gone(&self, app: &str, pod: &str) {
        let started = Instant::now();
        while self.all_pods(app).iter().any(|p| p == pod) {
            if started.elapsed() > POD_TIMEOUT {
                panic!("{pod} still exists after {POD_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
