//! Writing a container image as an OCI image-layout archive, without a container engine.
//!
//! The archive holds `oci-layout`, `index.json` and `blobs/sha256/…` (the OCI image layout, which
//! `ctr images import`, `podman load` and Docker 25+ read) and a Docker `manifest.json` naming the
//! same blobs (which older `docker load` and `kind load image-archive` read). Everything is
//! written in a fixed order with fixed timestamps and owners, so the same files give the same
//! archive, byte for byte.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One file system entry of a layer. Paths are relative (`etc/passwd`).
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory with mode `0o755`.
    Dir(String),
    /// A regular file with its mode and content.
    File { path: String, mode: u32, data: Vec<u8> },
    /// A symbolic link `path` → `target`.
    Symlink { path: String, target: String },
}

impl Entry {
    /// A regular file.
    pub fn file(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File {
            path: path.to_owned(),
            mode,
            data: data.into(),
        }
    }

    /// A directory.
    pub fn dir(path: &str) -> Entry {
        Entry::Dir(path.to_owned())
    }

    fn path(&self) -> &str {
        match self {
            Entry::Dir(path) | Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// What an image runs, as in its OCI config.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `User` (`uid:gid`), empty for root.
    pub user: String,
    /// `Env`, `NAME=value`.
    pub env: Vec<String>,
}

/// A single-layer image to write.
#[derive(Debug, Clone)]
pub struct Image {
    /// The full reference, e.g. `docker.io/library/vaultsync:dev`.
    pub reference: String,
    /// The layer's entries; parents are added where missing, and the order is sorted.
    pub entries: Vec<Entry>,
    /// What it runs.
    pub run: Run,
}

/// What [`Image::write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The manifest digest (`sha256:…`), the image's identity in containerd.
    pub manifest_digest: String,
    /// Size of the uncompressed layer in bytes.
    pub layer_size: u64,
    /// Size of the archive in bytes.
    pub archive_size: u64,
}

impl Image {
    /// Writes the image as an archive at `path`.
    pub fn write(&self, path: &Path) -> Result<Written> {
        let layer = layer_tar(&self.entries)?;
        let layer_digest = digest(&layer);
        let config = serde_json::to_vec(&self.config(&layer_digest))?;
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer_digest, layer.len())],
        }))?;
        let manifest_digest = digest(&manifest);
        let (repository, tag) = split_reference(&self.reference);
        let mut manifest_descriptor = descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &manifest_digest,
            manifest.len(),
        );
        manifest_descriptor["platform"] = json!({"architecture": "amd64", "os": "linux"});
        manifest_descriptor["annotations"] = json!({
            "io.containerd.image.name": self.reference,
            "org.opencontainers.image.ref.name": tag,
        });
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [manifest_descriptor],
        }))?;
        let docker_manifest = serde_json::to_vec(&json!([{
            "Config": blob_path(&config_digest),
            "RepoTags": [format!("{}:{tag}", docker_name(repository))],
            "Layers": [blob_path(&layer_digest)],
        }]))?;

        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut archive = tar::Builder::new(BufWriter::new(file));
        let mut add = |name: &str, data: &[u8]| append(&mut archive, name, 0o644, data);
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        add("manifest.json", &docker_manifest)?;
        add(&blob_path(&config_digest), &config)?;
        add(&blob_path(&manifest_digest), &manifest)?;
        add(&blob_path(&layer_digest), &layer)?;
        archive.into_inner()?.flush()?;
        Ok(Written {
            manifest_digest: format!("sha256:{manifest_digest}"),
            layer_size: layer.len() as u64,
            archive_size: std::fs::metadata(path)?.len(),
        })
    }

    fn config(&self, layer_digest: &str) -> Value {
        let Run {
            entrypoint,
            cmd,
            user,
            env,
        } = &self.run;
        json!({
            // Fixed, so the same inputs give the same image.
            "created": "1970-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Cmd": cmd, "User": user, "Env": env, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask image"}],
        })
    }
}

/// The paths in the (first) layer of the image in the archive at `path`, in archive order.
pub fn layer_paths(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = |name: &str| -> Result<Vec<u8>> {
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy() == name {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                return Ok(data);
            }
        }
        anyhow::bail!("{name} is not in {}", path.display())
    };
    let blob = |digest: &Value| -> Result<Vec<u8>> {
        let digest = digest.as_str().unwrap_or_default().trim_start_matches("sha256:");
        file(&blob_path(digest))
    };
    let index: Value = serde_json::from_slice(&file("index.json")?)?;
    let manifest: Value = serde_json::from_slice(&blob(&index["manifests"][0]["digest"])?)?;
    let layer = blob(&manifest["layers"][0]["digest"])?;
    let mut paths = Vec::new();
    for entry in tar::Archive::new(layer.as_slice()).entries()? {
        paths.push(entry?.path()?.to_string_lossy().into_owned());
    }
    Ok(paths)
}

/// The layer as an uncompressed tar: parent directories added, entries sorted by path.
fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut all: Vec<Entry> = entries.to_vec();
    for entry in entries {
        let mut parent = Path::new(entry.path()).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            all.push(Entry::Dir(dir.to_string_lossy().into_owned()));
            parent = dir.parent();
        }
    }
    all.sort_by(|a, b| a.path().cmp(b.path()));
    all.dedup_by(|a, b| a.path() == b.path() && matches!((a, b), (Entry::Dir(_), Entry::Dir(_))));
    let mut layer = tar::Builder::new(Vec::new());
    for entry in &all {
        match entry {
            Entry::Dir(path) => {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                layer.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Entry::File { path, mode, data } => append(&mut layer, path, *mode, data)?,
            Entry::Symlink { path, target } => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                layer.append_link(&mut header, path, target)?;
            }
        }
    }
    Ok(layer.into_inner()?)
}

fn append<W: Write>(archive: &mut tar::Builder<W>, path: &str, mode: u32, data: &[u8]) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    archive
        .append_data(&mut header, path, data)
        .with_context(|| format!("adding {path} to the archive"))
}

/// A header owned by root, dated the epoch.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": format!("sha256:{digest}"), "size": size})
}

fn digest(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{digest}")
}

/// `docker.io/library/vaultsync:dev` → (`docker.io/library/vaultsync`, `dev`).
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "latest"),
    }
}

/// The short name Docker shows for a repository on Docker Hub.
fn docker_name(repository: &str) -> &str {
    repository
        .strip_prefix("docker.io/library/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        Image {
            reference: "docker.io/library/example:1".into(),
            entries: vec![
                Entry::file("usr/bin/tool", 0o755, b"binary".to_vec()),
                Entry::dir("proc"),
                Entry::Symlink {
                    path: "bin/sh".into(),
                    target: "/usr/bin/tool".into(),
                },
            ],
            run: Run {
                entrypoint: vec!["/usr/bin/tool".into()],
                ..Run::default()
            },
        }
    }

    #[test]
    fn the_same_image_is_written_byte_for_byte_the_same() {
        let dir = std::env::temp_dir().join(format!("oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
        let first = image().write(&a).unwrap();
        let second = image().write(&b).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_layer_lists_parents_before_children_once_each() {
        let tar = layer_tar(&image().entries).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, ["bin/", "bin/sh", "proc/", "usr/", "usr/bin/", "usr/bin/tool"]);
    }

    #[test]
    fn docker_names_drop_the_default_registry() {
        assert_eq!(
            split_reference("docker.io/library/vaultsync:dev"),
            ("docker.io/library/vaultsync", "dev")
        );
        assert_eq!(docker_name("docker.io/library/vaultsync"), "vaultsync");
        assert_eq!(split_reference("localhost:5000/x"), ("localhost:5000/x", "latest"));
    }
}
