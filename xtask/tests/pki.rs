//! The environment's PKI engine issues certificates that vaultsync shapes into valid
//! `kubernetes.io/tls` data.

#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/tls.rs"]
mod tls;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultsync::vault::pki::{self, Request};
use xtask::{Env, PKI_MOUNT, PKI_ROLE};

fn client(env: &Env) -> VaultClient {
    let settings = VaultClientSettingsBuilder::default()
        .address(&env.vault_addr)
        .token(&env.vault_token)
        .build()
        .unwrap();
    VaultClient::new(settings).unwrap()
}

#[tokio::test]
async fn a_certificate_from_the_test_role_chains_to_the_root_and_matches_its_key() {
    let env = Env::shared();
    let request = Request {
        common_name: "app.example.test".into(),
        alt_names: vec!["localhost".into()],
        ip_sans: vec!["127.0.0.1".into()],
        ttl: Some("30s".into()),
    };
    let issued = pki::issue(&client(env), PKI_MOUNT, PKI_ROLE, &request).await.unwrap();
    let data = pki::tls_data(&issued);
    let (crt, key, ca) = (&data["tls.crt"], &data["tls.key"], &data["ca.crt"]);

    tls::verify_tls(crt, key, ca).unwrap();
    // Issued by the root directly: tls.crt holds the leaf alone, ca.crt the root.
    let pems = |bytes: &[u8]| String::from_utf8_lossy(bytes).matches("BEGIN CERTIFICATE").count();
    assert_eq!((pems(crt), pems(ca)), (1, 1));

    let now = jiff::Timestamp::now().as_second();
    let not_after = tls::not_after(crt).as_second();
    assert_eq!(not_after, issued.expiration, "openssl and Vault disagree on the expiry");
    assert!(
        (now + 20..=now + 40).contains(&not_after),
        "asked for 30 s, got {} s",
        not_after - now
    );

    // A key that is not the certificate's is caught.
    let other = pki::issue(&client(env), PKI_MOUNT, PKI_ROLE, &request).await.unwrap();
    let err = tls::verify_tls(crt, &pki::tls_data(&other)["tls.key"], ca).unwrap_err();
    assert!(err.contains("not the key"), "{err}");
}

#[tokio::test]
async fn the_test_role_refuses_names_outside_example_test() {
    let env = Env::shared();
    let request = Request {
        common_name: "app.example.com".into(),
        ..Request::default()
    };
    let err = pki::issue(&client(env), PKI_MOUNT, PKI_ROLE, &request)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "VaultRejected", "{err}");
}
