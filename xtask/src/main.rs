//! `cargo xtask`: developer tasks for vaultsync.

mod bench;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::{Env, EnvOptions};

/// Developer tasks for vaultsync.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build or install etcd, the Kubernetes binaries (control plane, kube-scheduler, kubelet,
    /// kubectl) and bao into the cache, and PostgreSQL, containerd, runc, Prometheus and the other
    /// Debian packages the environment uses.
    Install,
    /// Manage a local environment (control plane, a node, OpenBao, PostgreSQL) that outlives this
    /// command.
    #[command(subcommand)]
    Env(EnvTask),
    /// Show vaultsync running as a pod of its image on a local cluster, syncing an OpenBao KV secret
    /// into a Secret that a pod reads before and after a rotation.
    Demo(DemoArgs),
    /// Build the operator's container image as an OCI archive (target/images/vaultsync.oci.tar),
    /// offline: a static musl binary, non-root, no shell.
    Image,
    /// Run the scale benchmark (issue 7) on a fresh environment and write docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Install the components if needed, then run every test (`cargo test --workspace`).
    Test {
        /// Extra arguments for `cargo test`, e.g. `-- --test-threads=1`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Environment directory [default: target/vaultsync-demo in the workspace].
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum EnvTask {
    /// Start the environment and write DIR/env.sh.
    Up(UpArgs),
    /// Stop the environment started in DIR.
    Down(DirArg),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Start no node (containerd, kube-scheduler, kubelet): pods stay Pending, start-up is faster.
    #[arg(long)]
    no_node: bool,
}

#[derive(Debug, clap::Args)]
struct DirArg {
    /// Environment directory [default: target/vaultsync-env in the workspace].
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn dir(self) -> PathBuf {
        self.dir
            .unwrap_or_else(|| xtask::workspace_root().join("target/vaultsync-env"))
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Task::Install => install(),
        Task::Env(EnvTask::Up(args)) => env_up(&args.dir.dir(), !args.no_node),
        Task::Env(EnvTask::Down(dir)) => env_down(&dir.dir()),
        Task::Demo(args) => {
            let dir = args
                .dir
                .unwrap_or_else(|| xtask::workspace_root().join("target/vaultsync-demo"));
            xtask::demo::run(&dir)
        }
        Task::Image => image(),
        Task::Bench(args) => bench::run(&args),
        Task::Test { args } => test(&args),
    }
}

/// Installs first, with progress on the terminal (inside `cargo test` the output is captured),
/// then runs the whole test suite.
fn test(args: &[String]) -> Result<()> {
    install()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args(["test", "--workspace"])
        .args(args)
        .status()?;
    anyhow::ensure!(status.success(), "cargo test failed ({status})");
    Ok(())
}

fn install() -> Result<()> {
    let bins = Env::ensure_binaries()?;
    for path in [
        &bins.etcd,
        &bins.kube_apiserver,
        &bins.kube_controller_manager,
        &bins.kube_scheduler,
        &bins.kubectl,
        &bins.kubelet,
        &bins.bao,
        &bins.postgres,
        &bins.psql,
    ] {
        println!("{}", path.display());
    }
    Ok(())
}

fn image() -> Result<()> {
    let archive = xtask::image::operator()?;
    println!("{}", archive.path.display());
    println!("image:  {} ({})", archive.reference, archive.written.manifest_digest);
    println!(
        "size:   {:.1} MiB uncompressed ({} bytes)",
        archive.written.layer_size as f64 / 1_048_576.0,
        archive.written.layer_size
    );
    println!("load it: ctr -n k8s.io images import FILE | docker load -i FILE | kind load image-archive FILE");
    Ok(())
}

fn env_up(dir: &Path, node: bool) -> Result<()> {
    let env = Env::up(EnvOptions {
        dir: dir.to_path_buf(),
        detached: true,
        node,
    })?;
    println!("API server: {}", env.api_server_url());
    println!("OpenBao:    {}", env.vault_addr);
    println!("PostgreSQL: {}", env.postgres_url);
    println!("logs:       {}", env.dir.join("logs").display());
    println!();
    println!("use it from a shell:  source {}", env.dir.join("env.sh").display());
    println!(
        "use it from tests:    VAULTSYNC_ENV_DIR={} cargo test",
        env.dir.display()
    );
    println!("stop it:              cargo xtask env down{}", dir_flag(dir));
    Ok(())
}

fn env_down(dir: &Path) -> Result<()> {
    xtask::down_dir(dir)?;
    println!("stopped the environment in {}", dir.display());
    Ok(())
}

/// The `--dir` flag to repeat in hints, empty for the default directory.
fn dir_flag(dir: &Path) -> String {
    if dir == xtask::workspace_root().join("target/vaultsync-env") {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}
