use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vaultsync::cli::{Cli, Command, LogFormat, RunArgs};
use vaultsync::http::{self, Readiness};
use vaultsync::leader::LeaderElection;
use vaultsync::metrics::Metrics;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Before any runtime starts: the renderer stays one thread, within its limits.
        Command::RenderTemplates => vaultsync::template::serve_stdio(),
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
            vaultsync::memory::limit_arenas();
            init_logging(args.serve.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// vaultrs logs request details at debug level; it stays at warn unless `VAULTSYNC_LOG` asks.
fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("VAULTSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info,vaultrs=warn,rustify=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (settings, serve) = args.into_settings()?;
    let metrics = Metrics::new()?;
    let ready = Readiness::default();
    let bound = http::serve(serve.metrics_address, metrics.clone(), ready.clone()).await?;
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    let kube_config = kube::Config::infer().await?;
    let client = kube::Client::try_from(kube_config.clone())?;
    tokio::spawn(vaultsync::memory::trim_periodically());

    // `stop` turns true on SIGTERM/Ctrl-C (a lost leadership ends the process instead).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    if !serve.leader_election {
        return vaultsync::controller::run(kube_config, settings, metrics, ready, stopped()).await;
    }
    let identity = settings
        .instance
        .clone()
        .unwrap_or_else(|| format!("vaultsync-{}", std::process::id()));
    let election = Arc::new(LeaderElection::new(
        client.clone(),
        &settings.namespace,
        &serve.leader_election_lease,
        &identity,
        serve.leader_election_duration,
    ));
    // A healthy standby is ready: it is doing its job, which is to wait.
    ready.set(true);
    tokio::select! {
        () = election.acquire() => {}
        () = stopped() => return Ok(()),
    }
    ready.set(false);
    // From here every write waits at the election's fence, and a watchdog ends the process if the
    // renew deadline passes (also while the runtime is stuck or the process was frozen).
    vaultsync::leader::fence::install(election.fence())?;
    let holder = election.clone();
    let lost = tokio::spawn(async move {
        holder.hold().await;
        // Not even an orderly shutdown: it would finish in-flight syncs another replica now owns.
        tracing::error!("lost leadership; exiting so a fresh process stands by");
        std::process::exit(1);
    });
    let result = vaultsync::controller::run(kube_config, settings, metrics, ready, stopped()).await;
    lost.abort();
    election.release().await;
    result
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
