//! The environment plus one operator, running on a runtime of its own for the whole test binary.

use std::sync::OnceLock;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use vaultsync::controller::{Backoff, Settings};
use vaultsync::http::{self, Readiness};
use vaultsync::metrics::Metrics;
use xtask::Env;

use super::Bao;

/// The shared environment, OpenBao helper and running operator.
pub struct Operator {
    pub env: &'static Env,
    pub bao: Bao,
    /// Base URL of the operator's `/metrics`, `/healthz` and `/readyz`.
    pub http: String,
}

static OPERATOR: OnceLock<Operator> = OnceLock::new();

/// The operator this test binary started.
pub(super) fn running() -> &'static Operator {
    OPERATOR.get().expect("the operator was started")
}

/// Namespace the operator runs in (holds its hash-key Secret).
pub const OPERATOR_NS: &str = "vaultsync-system";

/// Starts the environment, installs the CRD as users do (`kubectl apply -f crds/`), and starts the
/// operator once per test binary, with the default test settings (the operator's own token may be
/// used in every namespace).
pub fn operator() -> &'static Operator {
    operator_with(|_| {})
}

/// Like [`operator`], with `configure` applied to the default test settings first. The first call
/// in a test binary starts the operator and wins: a binary must use one configuration throughout.
pub fn operator_with(configure: fn(&mut Settings)) -> &'static Operator {
    OPERATOR.get_or_init(|| {
        super::logs::install();
        // The operator runs inside the test binary; templates render in the real `vaultsync`.
        vaultsync::template::set_program(env!("CARGO_BIN_EXE_vaultsync"));
        let env = Env::shared();
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vaultsecret.yaml");
        let kubectl = |args: &[&str]| {
            let out = env.kubectl().args(args).output().expect("run kubectl");
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        kubectl(&["apply", "-f", crd]);
        kubectl(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/vaultsecrets.vaultsync.dev",
        ]);
        let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {OPERATOR_NS}\n");
        kubectl_apply(env, &ns, "create the operator namespace");

        let mut settings = Settings {
            vault_address: Some(vaultsync::vault::parse_address(&env.vault_addr).expect("vault address")),
            vault_ca_pem: None,
            vault_token: Some(env.vault_token.clone()),
            default_identity_namespaces: vec!["*".into()],
            default_identity_leases_namespaces: vec!["*".into()],
            allowed_vault_addresses: Vec::new(),
            allowed_token_audiences: vec!["vault".into()],
            max_token_expiration: Duration::from_secs(600),
            vault_timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(4),
            },
            concurrency: 16,
            namespace: OPERATOR_NS.into(),
            hash_key_secret: "vaultsync-hash-key".into(),
            instance: Some("e2e".into()),
            rollout_debounce: Duration::from_secs(2),
            default_refresh: Duration::from_secs(3600),
            allow_templates: true,
            watch_namespaces: Vec::new(),
        };
        configure(&mut settings);
        let kubeconfig = env.kubeconfig.clone();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("vaultsync-operator".into())
            .spawn(move || {
                let rt = tokio::runtime::Runtime::new().expect("operator runtime");
                rt.block_on(async move {
                    let metrics = Metrics::new().expect("metrics registry");
                    let ready = Readiness::default();
                    let localhost = "127.0.0.1:0".parse().expect("address");
                    let bound = http::serve(localhost, metrics.clone(), ready.clone())
                        .await
                        .expect("serve /metrics");
                    bound_tx.send(bound).expect("report the metrics address");
                    let config = config_for(&kubeconfig).await;
                    // Runs again after each `restart_operator()`, with fresh memory.
                    loop {
                        let shutdown = super::restart::shutdown_signal();
                        // Ready again once this controller has listed the VaultSecrets.
                        ready.set(false);
                        super::restart::started();
                        let run = vaultsync::controller::run(
                            config.clone(),
                            settings.clone(),
                            metrics.clone(),
                            ready.clone(),
                            shutdown,
                        );
                        if let Err(e) = run.await {
                            panic!("operator stopped: {e:#}");
                        }
                    }
                });
            })
            .expect("spawn operator thread");
        let bound = bound_rx.recv().expect("the operator thread serves /metrics");
        Operator {
            env,
            bao: Bao::new(env),
            http: format!("http://{bound}"),
        }
    })
}

/// `kubectl ARGS` against the environment's API server; returns stdout, panics with stderr on
/// failure.
pub fn kubectl(env: &Env, args: &[&str]) -> String {
    let out = env.kubectl().args(args).output().expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -f -` of `yaml`, panicking with `what` on failure.
pub fn kubectl_apply(env: &Env, yaml: &str, what: &str) {
    let mut apply = env
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(apply.stdin.as_mut().expect("stdin"), yaml.as_bytes()).expect("write manifest");
    assert!(apply.wait().expect("kubectl").success(), "{what}");
}

impl Operator {
    /// GET `path` (`/metrics`, `/healthz`, `/readyz`) from the operator's HTTP endpoints:
    /// (status code, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("GET the operator's HTTP endpoint");
        let status = response.status().as_u16();
        (status, response.text().await.expect("response body"))
    }

    /// An admin client for the calling test's runtime.
    pub async fn client(&self) -> Client {
        client_for(&self.env.kubeconfig).await
    }
}

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    Client::try_from(config_for(kubeconfig).await).expect("kube client")
}

/// The admin kubeconfig as a client configuration.
pub async fn config_for(kubeconfig: &std::path::Path) -> kube::Config {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig")
}
