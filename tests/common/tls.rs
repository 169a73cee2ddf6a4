//! Checks of `kubernetes.io/tls` Secret data with the `openssl` CLI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Checks that `crt` (the leaf, then any intermediates) chains to `ca` and is valid now, and that
/// `key` is the private key of the leaf. The error says which check failed, with openssl's output
/// (never the key).
pub fn verify_tls(crt: &[u8], key: &[u8], ca: &[u8]) -> Result<(), String> {
    let dir = Scratch::new()?;
    let (crt, key, ca) = (
        dir.write("tls.crt", crt)?,
        dir.write("tls.key", key)?,
        dir.write("ca.crt", ca)?,
    );
    let verified = openssl(&["verify", "-CAfile", path(&ca), "-untrusted", path(&crt), path(&crt)])?;
    if !verified.trim_end().ends_with(": OK") {
        return Err(format!("openssl verify did not say OK: {verified}"));
    }
    let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", path(&crt)])?;
    let from_key = openssl(&["pkey", "-pubout", "-in", path(&key)])?;
    if from_cert != from_key {
        return Err(format!(
            "tls.key is not the key of the certificate: certificate public key\n{from_cert}key's public key\n{from_key}"
        ));
    }
    Ok(())
}

/// When the first certificate in `crt` expires.
pub fn not_after(crt: &[u8]) -> jiff::Timestamp {
    let dir = Scratch::new().unwrap();
    let crt = dir.write("tls.crt", crt).unwrap();
    let end = openssl(&["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in", path(&crt)]).unwrap();
    // notAfter=2026-11-27 10:40:00Z
    let text = end.trim().trim_start_matches("notAfter=");
    text.replacen(' ', "T", 1)
        .parse()
        .unwrap_or_else(|e| panic!("openssl printed an unexpected date {text:?}: {e}"))
}

/// Runs `openssl ARGS`; its stdout, or an error with its output.
fn openssl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "openssl {} failed: {stdout}{}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A directory of its own under the temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vaultsync-tls-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn write(&self, name: &str, content: &[u8]) -> Result<PathBuf, String> {
        let file = self.0.join(name);
        fs::write(&file, content).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
