//! Every file of `examples/` on the stock install (`config/default`): the Vault side set up as
//! `examples/README.md` and each file's header say, each file's VaultSecrets and ServiceAccounts
//! applied as shipped, and every VaultSecret `Ready=True` — except `custom-vault.yaml`, whose
//! address a stock install does not allow. The Deployments of `rollout.yaml` are not applied:
//! this node's pods must use the host's network and cannot pull their image.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::cluster;
use crate::common::auth::{APPROLE_MOUNT, jwt_role, kubernetes_role, token_with_policy};
use crate::common::{Bao, Operator, TestNs, db, has_value, kubectl_apply};

/// The namespace every example uses.
const NS: &str = "shop";

/// The policy of `examples/README.md`.
const POLICY: &str = r#"path "secret/data/shop/*"  { capabilities = ["read"] }
path "kv1/shared/*"        { capabilities = ["read"] }
path "database/creds/shop" { capabilities = ["read"] }
path "pki/issue/web"       { capabilities = ["update"] }
path "sys/leases/renew"    { capabilities = ["update"] }
path "sys/leases/revoke"   { capabilities = ["update"] }
"#;

/// The role ID `examples/approle-auth.yaml` names.
const ROLE_ID: &str = "8f2c3b9e-1d7a-4c55-9a3e-5b0f2e6d7c11";

/// The documents of every example file, by file name.
fn examples() -> BTreeMap<String, Vec<Value>> {
    let dir = xtask::workspace_root().join("examples");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let docs = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .filter(|d| !d.is_null())
            .collect();
        files.insert(path.file_name().unwrap().to_string_lossy().into_owned(), docs);
    }
    files
}

/// The Vault side of `examples/README.md` and of each file's header.
fn vault_setup(bao: &Bao) {
    bao.run(&["write", "sys/policies/acl/shop", &format!("policy={POLICY}")]);
    kubernetes_role(bao, "shop", NS, "shop", "shop", &["token_ttl=1h"]);
    // jwt-auth.yaml
    jwt_role(bao, "shop", NS, "shop", "vault", "shop", &["token_ttl=1h"]);
    // approle-auth.yaml
    bao.run(&[
        "write",
        &format!("auth/{APPROLE_MOUNT}/role/shop"),
        "token_policies=shop",
        "secret_id_ttl=0",
    ]);
    bao.run(&[
        "write",
        &format!("auth/{APPROLE_MOUNT}/role/shop/role-id"),
        &format!("role_id={ROLE_ID}"),
    ]);
    // KV values the files read; kv-merge.yaml pins version 3 of shop/db.
    bao.put("shop/config", &[("username", "shop"), ("password", "change-me")]);
    for password in ["first", "second", "p@ss:word/1"] {
        bao.put("shop/db", &[("username", "shop"), ("password", password)]);
    }
    let keystore = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 0xfe, 0xff]);
    bao.put("shop/keystore", &[("keystore", &keystore)]);
    bao.put("shop/ghcr", &[("username", "shop-bot"), ("token", "ghp_example")]);
    bao.put("shop/api-key", &[("key", "from-vault")]);
    bao.put("shop/session", &[("key", "first")]);
    bao.put_in("kv1", "shared/db", &[("host", "db.shop.svc"), ("port", "5432")]);
    // database-credentials.yaml: connection and role `shop`.
    db::role(bao, "shop", "1h", "24h");
    // pki-certificate.yaml
    bao.run(&[
        "write",
        "pki/roles/web",
        "allowed_domains=example.test",
        "allow_subdomains=true",
        "max_ttl=72h",
    ]);
}

/// The Secrets the headers create in the namespace.
fn secrets(op: &Operator, t: &TestNs) {
    let secret_id = op
        .bao
        .run(&["write", "-f", "-field=secret_id", "auth/approle/role/shop/secret-id"]);
    let token = token_with_policy(&op.bao, "shop");
    let ca = op.env.ca_pem();
    for (name, key, value) in [
        ("shop-approle", "secret-id", secret_id.trim()),
        ("shop-vault-token", "token", token.as_str()),
        ("vault-ca", "ca.crt", ca.as_str()),
        ("api-key", "key", "old"),
    ] {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": t.ns},
            "stringData": {key: value},
        });
        kubectl_apply(op.env, &secret.to_string(), &format!("create Secret {name}"));
    }
}

#[tokio::test]
async fn every_example_works_on_the_stock_install_with_its_documented_vault_setup() {
    let op = cluster();
    let t = TestNs::fixed_in(op, NS).await;
    let files = examples();
    assert!(files.len() >= 13, "examples/: {:?}", files.keys());

    // Applying every file never silently replaces one example with another.
    let mut objects = BTreeMap::new();
    let mut destinations = BTreeMap::new();
    for (file, docs) in &files {
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert_eq!(doc["metadata"]["namespace"], NS, "{file}: {kind} {name}");
            let key = format!("{kind}/{name}");
            if let Some(other) = objects.insert(key.clone(), (file, doc)) {
                assert!(
                    kind == "ServiceAccount" && other.1 == doc,
                    "{key} is defined by {file} and {}",
                    other.0
                );
            }
            if kind == "VaultSecret" {
                let secret = doc["spec"]["destination"]["name"].as_str().unwrap_or(name);
                if let Some(other) = destinations.insert(secret.to_owned(), file) {
                    panic!("Secret {secret} is the destination of {file} and {other}");
                }
            }
        }
    }

    vault_setup(&op.bao);
    secrets(op, &t);
    for (file, docs) in &files {
        let applied: Vec<String> = docs
            .iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("VaultSecret" | "ServiceAccount")))
            .map(Value::to_string)
            .collect();
        for doc in applied {
            kubectl_apply(op.env, &doc, &format!("kubectl apply a document of examples/{file}"));
        }
    }

    for (key, (file, _)) in &objects {
        let Some(name) = key.strip_prefix("VaultSecret/") else {
            continue;
        };
        let (status, reason) = match file.as_str() {
            "custom-vault.yaml" => ("False", "VaultAddressNotAllowed"),
            _ => ("True", "Synced"),
        };
        eprintln!("examples/{file}: waiting for {name} to be Ready={status} ({reason})");
        t.wait_ready(name, status, reason).await;
    }
    t.wait_secret(
        "api-key",
        "the adopted Secret of take-over.yaml",
        has_value("key", "from-vault"),
    )
    .await;
    t.wait_secret(
        "shop-merged",
        "kv-merge.yaml's pinned version 3",
        has_value("password", "p@ss:word/1"),
    )
    .await;
}
