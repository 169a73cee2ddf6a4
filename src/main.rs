use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vaultsync::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match vaultsync::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            // vaultrs logs request details at debug level; keep it at warn unless asked.
            let filter = EnvFilter::try_from_env("VAULTSYNC_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,vaultrs=warn,rustify=warn"));
            tracing_subscriber::fmt().with_env_filter(filter).init();
            match run(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: vaultsync::cli::RunArgs) -> anyhow::Result<()> {
    let settings = args.into_settings()?;
    let client = kube::Client::try_default().await?;
    vaultsync::controller::run(client, settings, shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
