//! Certificates and keys for the control plane, and the admin kubeconfig.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Common name of the admin client certificate.
const ADMIN_CN: &str = "vaultsync-admin";

/// Paths of the PEM files under `DIR/pki`.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// The PKI of an environment directory (files may not exist yet).
    pub fn at(env_dir: &Path) -> Pki {
        Pki {
            dir: env_dir.join("pki"),
        }
    }

    /// The CA certificate: signs the serving and client certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The API server's serving certificate.
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    /// The API server's serving key.
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    /// The admin client certificate (O=system:masters).
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    /// The admin client key.
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }
    /// The service-account token signing key (private).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// The service-account token verification key (public).
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Generates a fresh CA, serving and admin certificates and a service-account key pair
    /// (all ECDSA P-256).
    pub fn generate(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "vaultsync-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        write_public(&self.ca_cert(), &ca_cert.pem())?;
        write_private(&self.dir.join("ca.key"), &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ]
            .map(String::from)
            .to_vec(),
        )?;
        serving.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        ]);
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.use_authority_key_identifier_extension = true;
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;
        write_public(&self.serving_cert(), &serving_cert.pem())?;
        write_private(&self.serving_key(), &serving_key.serialize_pem())?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name = rcgen::DistinguishedName::new();
        admin.distinguished_name.push(DnType::CommonName, ADMIN_CN);
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin.use_authority_key_identifier_extension = true;
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;
        write_public(&self.admin_cert(), &admin_cert.pem())?;
        write_private(&self.admin_key(), &admin_key.serialize_pem())?;

        let sa_key = KeyPair::generate()?;
        write_private(&self.sa_key(), &sa_key.serialize_pem())?;
        write_public(&self.sa_pub(), &sa_key.public_key_pem())?;
        Ok(())
    }

    /// Writes a kubeconfig for `server` with the CA and the admin credentials embedded.
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<()> {
        let b64 = |path: PathBuf| -> Result<String> {
            let pem = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(STANDARD.encode(pem))
        };
        let kubeconfig = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: vaultsync
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_CN}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: vaultsync
  context:
    cluster: vaultsync
    user: {ADMIN_CN}
    namespace: default
current-context: vaultsync
",
            ca = b64(self.ca_cert())?,
            cert = b64(self.admin_cert())?,
            key = b64(self.admin_key())?,
        );
        write_private(path, &kubeconfig)
    }
}

fn write_public(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Writes a file readable only by its owner.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
