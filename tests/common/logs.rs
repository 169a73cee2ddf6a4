//! Captures the in-process operator's log output so tests can check nothing secret is logged.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buffer() -> &'static Mutex<Vec<u8>> {
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Everything the operator has logged so far (all levels down to debug).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&buffer().lock().expect("log buffer")).into_owned()
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buffer().lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global subscriber that records debug-level logs of vaultsync, vaultrs and kube.
pub fn install() {
    let filter = tracing_subscriber::EnvFilter::new("debug,hyper=info,h2=info,tower=info,rustls=info");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
}
