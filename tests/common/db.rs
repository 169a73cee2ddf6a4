//! OpenBao's database secrets engine against the environment's PostgreSQL: roles for tests, and
//! checks made by logging in to PostgreSQL with issued credentials.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use vaultsync::api::{LeaseStatus, VaultSecret};

use super::{Bao, within_for};

/// Mount path of the database secrets engine.
pub const MOUNT: &str = "database";

/// Mounts the engine once per test binary (tests of one binary run concurrently).
fn enable(bao: &Bao) {
    static ENABLED: OnceLock<()> = OnceLock::new();
    ENABLED.get_or_init(|| {
        let mounts: Value = serde_json::from_str(&bao.run(&["secrets", "list", "-format=json"])).expect("mounts");
        if mounts["database/"].is_null() {
            bao.run(&["secrets", "enable", MOUNT]);
        }
    });
}

/// Creates a connection and role `role` issuing PostgreSQL logins valid for `default_ttl`,
/// renewable up to `max_ttl` (Go durations). Returns the path to read credentials from
/// (`creds/<role>`).
pub fn role(bao: &Bao, role: &str, default_ttl: &str, max_ttl: &str) -> String {
    enable(bao);
    let env = bao.env;
    bao.run(&[
        "write",
        &format!("{MOUNT}/config/{role}"),
        "plugin_name=postgresql-database-plugin",
        &format!("connection_url={}", env.postgres_url_template()),
        "username=postgres",
        &format!("password={}", env.postgres_password),
        &format!("allowed_roles={role}"),
    ]);
    bao.run(&[
        "write",
        &format!("{MOUNT}/roles/{role}"),
        &format!("db_name={role}"),
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
        &format!("default_ttl={default_ttl}"),
        &format!("max_ttl={max_ttl}"),
    ]);
    format!("creds/{role}")
}

/// Whether `user` with `password` logs in to PostgreSQL.
pub fn logs_in(bao: &Bao, user: &str, password: &str) -> bool {
    bao.env
        .psql()
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .args(["--tuples-only", "--no-align", "--command", "select 1"])
        .output()
        .expect("run psql")
        .status
        .success()
}

/// How many of `users` exist as PostgreSQL roles.
pub fn existing_roles(bao: &Bao, users: &[String]) -> usize {
    let list: Vec<String> = users.iter().map(|u| format!("'{}'", u.replace('\'', "''"))).collect();
    let out = bao
        .env
        .psql()
        .args([
            "--tuples-only",
            "--no-align",
            "--command",
            &format!("select count(*) from pg_roles where rolname in ({})", list.join(",")),
        ])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

/// Waits (bounded poll, up to `limit`) until `user` can no longer log in.
pub async fn wait_login_refused(bao: &Bao, user: &str, password: &str, limit: Duration) {
    within_for(limit, &format!("{user} to stop logging in"), async {
        while logs_in(bao, user, password) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

/// Whether OpenBao still knows lease `lease_id` (`sys/leases/lookup`).
pub fn lease_exists(bao: &Bao, lease_id: &str) -> bool {
    bao.env
        .bao()
        .args([
            "write",
            "-format=json",
            "sys/leases/lookup",
            &format!("lease_id={lease_id}"),
        ])
        .output()
        .expect("run bao")
        .status
        .success()
}

/// Number of credentials OpenBao issued for `creds/<role>` (from its audit log).
pub fn issued(bao: &Bao, path: &str) -> usize {
    bao.requests_for(&format!("{MOUNT}/{path}"))
}

/// Writes ACL policy `name` allowing credentials at `<mount>/<path>` and renewing and revoking
/// leases: what a VaultSecret's own identity needs for a dynamic source.
pub fn policy(bao: &Bao, name: &str, path: &str) {
    let policy = format!(
        "path \"{MOUNT}/{path}\" {{ capabilities = [\"read\"] }}\n\
         path \"sys/leases/renew\" {{ capabilities = [\"update\"] }}\n\
         path \"sys/leases/revoke\" {{ capabilities = [\"update\"] }}\n"
    );
    bao.run(&[
        "write",
        &format!("sys/policies/acl/{name}"),
        &format!("policy={policy}"),
    ]);
}

/// The lease of source `source` (its name, or its index) in `vs`'s status; panics without one.
pub fn lease(vs: &VaultSecret, source: &str) -> LeaseStatus {
    vs.status
        .as_ref()
        .and_then(|s| s.sources.iter().find(|s| s.name == source))
        .and_then(|s| s.lease.as_deref().cloned())
        .unwrap_or_else(|| panic!("no lease for source {source} in status: {:?}", vs.status))
}
