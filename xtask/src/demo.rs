//! `cargo xtask demo`: a VaultSecret turning an OpenBao KV secret into a Kubernetes Secret, on the
//! local environment, end to end, as a user would do it with kubectl and bao.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Env, EnvOptions, workspace_root};

const SECRET: &str = "shop-config";

/// Kills the operator when the demo ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo in `dir`; the environment stops when the demo ends.
pub fn run(dir: &Path) -> Result<()> {
    let root = workspace_root();
    step("building the operator");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    show(
        Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--bin", "vaultsync"]),
    )?;

    step("starting etcd, kube-apiserver, kube-controller-manager and OpenBao on loopback");
    let env = Env::up(EnvOptions {
        dir: dir.to_path_buf(),
        detached: false,
    })?;
    let result = demo(&env, &root);
    env.down()?;
    result
}

fn demo(env: &Env, root: &Path) -> Result<()> {
    step("installing the CRD: kubectl apply -f crds/vaultsecret.yaml");
    show(
        env.kubectl()
            .current_dir(root)
            .args(["apply", "-f", "crds/vaultsecret.yaml"]),
    )?;
    show(env.kubectl().args([
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/vaultsecrets.vaultsync.dev",
    ]))?;
    show(env.kubectl().args(["create", "namespace", "vaultsync-system"]))?;

    step("starting the operator: vaultsync run (log in logs/vaultsync.log)");
    let log = std::fs::File::create(env.dir.join("logs/vaultsync.log"))?;
    let _operator = Operator(
        Command::new(root.join("target/debug/vaultsync"))
            .arg("run")
            .env("KUBECONFIG", &env.kubeconfig)
            .env("VAULTSYNC_VAULT_ADDRESS", &env.vault_addr)
            .env("VAULTSYNC_VAULT_TOKEN", &env.vault_token)
            // The demo reads with the operator's own token, allowed for `default` only; real
            // setups give each namespace its own identity with spec.auth.
            .env("VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES", "default")
            .env("VAULTSYNC_METRICS_ADDRESS", "127.0.0.1:0")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting vaultsync")?,
    );

    step("writing a KV secret: bao kv put secret/demo/shop username=shop password=change-me");
    show(
        env.bao()
            .args(["kv", "put", "secret/demo/shop", "username=shop", "password=change-me"]),
    )?;

    step("applying examples/kv.yaml");
    show(
        env.kubectl()
            .current_dir(root)
            .args(["apply", "-f", "examples/kv.yaml"]),
    )?;
    show(env.kubectl().args([
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        &format!("vaultsecret/{SECRET}"),
    ]))?;
    show(env.kubectl().args(["get", "vaultsecret", SECRET]))?;
    println!("Secret {SECRET}: {}", secret_data(env)?);

    step("changing the password in OpenBao: bao kv patch secret/demo/shop password=rotated");
    show(env.bao().args(["kv", "patch", "secret/demo/shop", "password=rotated"]))?;
    let started = Instant::now();
    println!("waiting for the refresh (interval 10s in examples/kv.yaml)...");
    loop {
        let data = secret_data(env)?;
        if data.contains("password=rotated") {
            println!("Secret {SECRET} followed after {:.0?}: {data}", started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the Secret did not follow the change within 60s (see {}/logs/vaultsync.log)",
                env.dir.display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    show(env.kubectl().args(["get", "vaultsecret", SECRET]))?;
    step("done; stopping everything");
    Ok(())
}

/// The Secret's keys and decoded values, `k=v` separated by spaces (demo values only).
fn secret_data(env: &Env) -> Result<String> {
    let template = r#"{{range $k, $v := .data}}{{$k}}={{$v | base64decode}} {{end}}"#;
    let out = env
        .kubectl()
        .args(["get", "secret", SECRET, "-o", &format!("go-template={template}")])
        .output()?;
    if !out.status.success() {
        bail!("kubectl get secret: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Runs `cmd` with its output shown. Errors name the program and arguments, never the
/// environment (which holds the OpenBao token).
fn show(cmd: &mut Command) -> Result<()> {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let what = format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
