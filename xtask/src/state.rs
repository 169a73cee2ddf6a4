//! What an environment directory records about its environment: `env.json` (read back by
//! [`crate::Env::load`]) and `env.sh` (for shells).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::binaries::Binaries;
use crate::certs::write_private;

/// The facts needed to attach to a running environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub api_server_url: String,
    pub openbao_port: u16,
    pub postgres_port: u16,
    /// etcd's client port (to restart kube-apiserver against it); 0 in older state files.
    #[serde(default)]
    pub etcd_port: u16,
    /// The PostgreSQL server's directory (data and superuser password).
    pub postgres_dir: PathBuf,
    pub detached: bool,
    /// Whether the environment has a node (containerd, kube-scheduler, kubelet).
    #[serde(default)]
    pub node: bool,
    pub binaries: Binaries,
}

impl State {
    /// Reads `DIR/env.json`.
    pub fn load(dir: &Path) -> Result<State> {
        let path = dir.join("env.json");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `DIR/env.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("env.json");
        fs::write(&path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }
}

/// Writes `DIR/env.sh`, exporting `vars` and prepending `bin_path` to `PATH` (mode 0600: it
/// holds the root token).
pub(crate) fn write_env_sh(dir: &Path, vars: &[(&str, String)], bin_path: &[PathBuf]) -> Result<()> {
    let mut script = String::new();
    for (name, value) in vars {
        script.push_str(&format!("export {name}='{value}'\n"));
    }
    let path: Vec<String> = bin_path.iter().map(|p| p.display().to_string()).collect();
    script.push_str(&format!("export PATH='{}':\"$PATH\"\n", path.join(":")));
    write_private(&dir.join("env.sh"), &script)
}
