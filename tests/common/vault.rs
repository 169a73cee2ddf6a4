//! Writing test data into OpenBao and counting the reads the operator makes.

use std::path::PathBuf;

use serde_json::Value;
use xtask::Env;

/// The `bao` CLI against the test OpenBao, and its audit log.
pub struct Bao {
    pub env: &'static Env,
    audit_log: PathBuf,
}

impl Bao {
    /// The environment's OpenBao; its config enables a file audit device, which lets tests count requests.
    pub fn new(env: &'static Env) -> Bao {
        Bao {
            env,
            audit_log: env.dir.join("openbao-audit.log"),
        }
    }

    /// Runs `bao ARGS`, panicking with stderr on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.env.bao().args(args).output().expect("run bao");
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a KV v2 secret at `secret/<path>`; returns nothing, the version is `kv_version`.
    pub fn put(&self, path: &str, pairs: &[(&str, &str)]) {
        self.put_in("secret", path, pairs);
    }

    /// Writes a KV secret in `mount` (v1 or v2 alike).
    pub fn put_in(&self, mount: &str, path: &str, pairs: &[(&str, &str)]) {
        let mut args = vec![
            "kv".to_owned(),
            "put".to_owned(),
            format!("-mount={mount}"),
            path.to_owned(),
        ];
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args);
    }

    /// Number of requests OpenBao has answered for `api_path` (e.g. `secret/data/ns/x`).
    pub fn requests_for(&self, api_path: &str) -> usize {
        self.audit_responses()
            .iter()
            .filter(|e| e["request"]["path"] == api_path)
            .count()
    }

    /// Every entry of the audit log so far (requests and responses), parsed.
    ///
    /// Each has `type`, `auth` (the token's `display_name`, `policies` and `metadata`, e.g. a
    /// Kubernetes login's `role`, `service_account_namespace`, `service_account_name`),
    /// `request` (`path`, `operation`, `data` with values HMAC'd unless the mount lists the key
    /// in `audit_non_hmac_request_keys`) and, for responses, `response` and `error`.
    pub fn audit_entries(&self) -> Vec<Value> {
        let log = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The audit log's response entries: one per request OpenBao answered.
    pub fn audit_responses(&self) -> Vec<Value> {
        let mut entries = self.audit_entries();
        entries.retain(|e| e["type"] == "response");
        entries
    }
}
