//! The environment's PostgreSQL server works with OpenBao's database secrets engine: dynamic
//! credentials log in, and revoking their lease drops the role.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;
use xtask::Env;

/// Runs `cmd`, asserts success, returns stdout.
fn run(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "{cmd:?} failed: {}", describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// `psql` logged in as `user` with `password`, running `sql` with unaligned, tuples-only output.
fn psql_as(env: &Env, user: &str, password: &str, sql: &str) -> Output {
    env.psql()
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .args(["--tuples-only", "--no-align", "--command", sql])
        .output()
        .unwrap()
}

/// Mounts the database secrets engine at `database/` unless it is mounted already.
fn enable_database_engine(env: &Env) {
    let mounts: Value = serde_json::from_str(&run(env.bao().args(["secrets", "list", "-format=json"]))).unwrap();
    if mounts["database/"].is_null() {
        run(env.bao().args(["secrets", "enable", "database"]));
    }
}

#[test]
fn psql_connects_as_the_superuser_over_tcp_with_a_password() {
    let env = Env::shared();
    let one = run(env
        .psql()
        .args(["--tuples-only", "--no-align", "--command", "select 1"]));
    assert_eq!(one.trim(), "1");

    // The URL alone is enough (it overrides the preset variables).
    let user = run(env.psql().env_remove("PGPASSWORD").arg(&env.postgres_url).args([
        "--tuples-only",
        "--no-align",
        "--command",
        "select current_user",
    ]));
    assert_eq!(user.trim(), "postgres");

    let wrong = psql_as(env, "postgres", "not-the-password", "select 1");
    assert!(!wrong.status.success(), "a wrong password logged in");
    assert!(
        describe(&wrong).contains("password authentication failed"),
        "{}",
        describe(&wrong)
    );
}

#[test]
fn openbao_issues_postgres_credentials_that_log_in_until_their_lease_is_revoked() {
    let env = Env::shared();
    enable_database_engine(env);
    let db = unique("xtask-pg");
    let role = unique("xtask-role");
    run(env.bao().args([
        "write",
        &format!("database/config/{db}"),
        "plugin_name=postgresql-database-plugin",
        &format!("connection_url={}", env.postgres_url_template()),
        "username=postgres",
        &format!("password={}", env.postgres_password),
        "allowed_roles=*",
    ]));
    run(env.bao().args([
        "write",
        &format!("database/roles/{role}"),
        &format!("db_name={db}"),
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' \
         VALID UNTIL '{{expiration}}';",
        "default_ttl=10s",
        "max_ttl=40s",
    ]));

    let creds: Value = serde_json::from_str(&run(env.bao().args([
        "read",
        "-format=json",
        &format!("database/creds/{role}"),
    ])))
    .unwrap();
    let lease_id = creds["lease_id"].as_str().unwrap();
    assert!(lease_id.starts_with(&format!("database/creds/{role}/")), "{creds}");
    assert_eq!(creds["lease_duration"], 10, "{creds}");
    assert_eq!(creds["renewable"], true, "{creds}");
    let username = creds["data"]["username"].as_str().unwrap();
    let password = creds["data"]["password"].as_str().unwrap();

    let login = psql_as(env, username, password, "select current_user");
    assert!(
        login.status.success(),
        "the issued credentials do not log in: {}",
        describe(&login)
    );
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), username);

    run(env
        .bao()
        .args(["write", "sys/leases/revoke", &format!("lease_id={lease_id}")]));

    let login = psql_as(env, username, password, "select 1");
    assert!(!login.status.success(), "revoked credentials still log in");
    let exists = run(env.psql().args([
        "--tuples-only",
        "--no-align",
        "--command",
        &format!("select count(*) from pg_roles where rolname = '{username}'"),
    ]));
    assert_eq!(exists.trim(), "0", "the revoked role {username} still exists");

    run(env.bao().args(["delete", &format!("database/roles/{role}")]));
    run(env.bao().args(["delete", &format!("database/config/{db}")]));
}
