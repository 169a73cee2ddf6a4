//! Pods on the node: who runs, what they printed (read from the kubelet's log files, as
//! `kubectl logs` cannot reach a node without an address), and the ReplicaSets of a Deployment.

use std::time::{Duration, Instant};

use super::TestNs;
use super::cluster::{POD_TIMEOUT, tools_image};

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
    /// Names of the running pods with label `app=<app>`.
    pub fn pods(&self, app: &str) -> Vec<String> {
        self.names("pods", app, &["--field-selector=status.phase=Running"])
    }

    /// Names of every pod with label `app=<app>`, whatever its phase.
    pub fn all_pods(&self, app: &str) -> Vec<String> {
        self.names("pods", app, &[])
    }

    /// Names of the ReplicaSets with label `app=<app>`.
    pub fn replica_sets(&self, app: &str) -> Vec<String> {
        self.names("replicasets", app, &[])
    }

    /// Names of the objects of `kind` with label `app=<app>` (and `extra` kubectl arguments).
    fn names(&self, kind: &str, app: &str, extra: &[&str]) -> Vec<String> {
        let selector = format!("app={app}");
        let mut args = vec!["get", kind, "-l", &selector, "-o", "jsonpath={.items[*].metadata.name}"];
        args.extend(extra);
        self.kubectl(&args).split_whitespace().map(str::to_owned).collect()
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
