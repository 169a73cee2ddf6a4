use super::*;

// Generated with openssl: an EC root, an intermediate it signed, and a leaf the intermediate signed.
const ROOT: &str = "-----BEGIN CERTIFICATE-----\nMIIBhDCCASugAwIBAgIUGXSNRZIbwsynu/cma5SZ0X2ntHQwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMZml4dHVyZSByb290MCAXDTI2MTEyNzEwNDEwNFoYDzIxMjYx\nMTAzMTA0MTA0WjAXMRUwEwYDVQQDDAxmaXh0dXJlIHJvb3QwWTATBgcqhkjOPQIB\nBggqhkjOPQMBBwNCAATCe7nWwz/JiiyTZWxSAECv65JQRNcgLMobZp2nWfgUPKsf\nrN9y8X5uhgSWX3VTbt5HRAXRM1KEH4Upavd8tA3fo1MwUTAdBgNVHQ4EFgQUgBU4\nNUfliNEEl1wUxj6eRTy/kuQwHwYDVR0jBBgwFoAUgBU4NUfliNEEl1wUxj6eRTy/\nkuQwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBo2ZKAI+A1jBqR\nf3sNjdeb09vyOmriHHKZ0VWfZPriNAIgLtRXo0u3PAspSVxLX7/lEHue8tMa+r9z\neZuAHrsLmKg=\n-----END CERTIFICATE-----";
const INTERMEDIATE: &str = "-----BEGIN CERTIFICATE-----\nMIIBnTCCAUOgAwIBAgIUCelH3Fl7LacmkY4Eh2+bDbiZu3kwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMZml4dHVyZSByb290MCAXDTI2MTEyNzEwNDEwNFoYDzIxMjYx\nMTAzMTA0MTA0WjAfMR0wGwYDVQQDDBRmaXh0dXJlIGludGVybWVkaWF0ZTBZMBMG\nByqGSM49AgEGCCqGSM49AwEHA0IABB2Z7sH9QNsYsdT0oekwAUTP8nF8QJibEcr+\nHFpHqWZ+B4R96JnOw+GhDAAn0s7cUD9IHUqtdvFEA9etQ/g1A46jYzBhMA8GA1Ud\nEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBS1mzZj1Lp26uhJ\nAiY34dX0Eu2FQTAfBgNVHSMEGDAWgBSAFTg1R+WI0QSXXBTGPp5FPL+S5DAKBggq\nhkjOPQQDAgNIADBFAiEAjxccptEOKFeKLmjNT6Mn+kdHgsdLCrSrDLA0K+dzIqYC\nIAhoBfg8JZhnas6PTbtsLLI1MhfayOOGLr5bVc9zNXIc\n-----END CERTIFICATE-----";
const LEAF: &str = "-----BEGIN CERTIFICATE-----\nMIIBNzCB3QIUHQYgstZioBz30XB9dP5g1oi0IkowCgYIKoZIzj0EAwIwHzEdMBsG\nA1UEAwwUZml4dHVyZSBpbnRlcm1lZGlhdGUwIBcNMjYxMTI3MTA0MTA0WhgPMjEy\nNjExMDMxMDQxMDRaMBsxGTAXBgNVBAMMEGFwcC5leGFtcGxlLnRlc3QwWTATBgcq\nhkjOPQIBBggqhkjOPQMBBwNCAAQI7/UB4a7CjPJauxI6OE+REzQHLnMrEwedQNqr\nUJsb5XOlUs2Epk0TP3dw21uaLDW5xAqMQ9GA2hgTdscZVS1pMAoGCCqGSM49BAMC\nA0kAMEYCIQC6Eding3G+EOVn2nuyvI0BDI4DP2G3kNC3EP4VE7w7WgIhAPw6bSnM\n5dm0tFbDD6utZS7z2h2opJV7bxx0TUAEFHeJ\n-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nkey-canary-3f1d\n-----END EC PRIVATE KEY-----";

fn cert(ca_chain: &[&str], issuing_ca: &str) -> Certificate {
    Certificate {
        certificate: LEAF.into(),
        private_key: KEY.into(),
        ca_chain: ca_chain.iter().map(|c| c.to_string()).collect(),
        issuing_ca: issuing_ca.into(),
        serial_number: "1d:d3".into(),
        expiration: 1_795_776_030,
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    String::from_utf8(data[key].clone()).unwrap()
}

#[test]
fn a_root_is_recognised_as_self_signed_and_the_others_are_not() {
    assert!(is_self_signed(ROOT));
    assert!(!is_self_signed(INTERMEDIATE));
    assert!(!is_self_signed(LEAF));
    assert!(!is_self_signed("not a certificate"));
    assert!(!is_self_signed(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    ));
}

#[test]
fn a_certificate_issued_by_a_root_gets_the_leaf_alone_in_tls_crt_and_the_root_in_ca_crt() {
    let data = tls_data(&cert(&[ROOT], ROOT));
    assert_eq!(text(&data, "tls.crt"), format!("{LEAF}\n"));
    assert_eq!(text(&data, "ca.crt"), format!("{ROOT}\n"));
    assert_eq!(text(&data, "tls.key"), format!("{KEY}\n"));
    assert_eq!(data.len(), 3);
}

#[test]
fn intermediates_follow_the_leaf_in_tls_crt_and_the_root_stays_out_of_it() {
    let data = tls_data(&cert(&[INTERMEDIATE, ROOT], INTERMEDIATE));
    assert_eq!(text(&data, "tls.crt"), format!("{LEAF}\n{INTERMEDIATE}\n"));
    assert_eq!(text(&data, "ca.crt"), format!("{ROOT}\n"));
}

#[test]
fn without_the_root_the_top_most_ca_becomes_ca_crt() {
    let data = tls_data(&cert(&[INTERMEDIATE], INTERMEDIATE));
    assert_eq!(text(&data, "tls.crt"), format!("{LEAF}\n{INTERMEDIATE}\n"));
    assert_eq!(text(&data, "ca.crt"), format!("{INTERMEDIATE}\n"));

    // No ca_chain at all: the issuing CA stands in for it.
    let data = tls_data(&cert(&[], ROOT));
    assert_eq!(text(&data, "tls.crt"), format!("{LEAF}\n"));
    assert_eq!(text(&data, "ca.crt"), format!("{ROOT}\n"));
}

#[test]
fn the_leaf_is_never_repeated_and_every_pem_ends_in_one_newline() {
    let padded = |pem: &str| format!("\n{pem}\n\n");
    let mut issued = cert(&[], "");
    issued.certificate = padded(LEAF);
    issued.ca_chain = vec![padded(LEAF), padded(INTERMEDIATE), padded(ROOT)];
    let data = tls_data(&issued);
    assert_eq!(text(&data, "tls.crt"), format!("{LEAF}\n{INTERMEDIATE}\n"));
    assert_eq!(text(&data, "ca.crt"), format!("{ROOT}\n"));
}

#[test]
fn a_certificate_never_prints_its_private_key() {
    let printed = format!("{:?}", cert(&[ROOT], ROOT));
    assert!(!printed.contains("key-canary"), "{printed}");
    assert!(printed.contains("1d:d3"), "{printed}");
}

#[test]
fn the_issue_response_is_read_and_a_missing_field_is_named_without_values() {
    let data: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
        "certificate": LEAF,
        "private_key": KEY,
        "private_key_type": "ec",
        "ca_chain": [ROOT],
        "issuing_ca": ROOT,
        "serial_number": "1d:d3",
        "expiration": 1_795_776_030,
    }))
    .unwrap();
    let issued = from_data(data.clone(), "issue pki/issue/test").unwrap();
    assert_eq!(issued.ca_chain, vec![ROOT.to_string()]);
    assert_eq!(issued.expiration, 1_795_776_030);

    let mut without = data;
    without.remove("issuing_ca");
    let err = from_data(without, "issue pki/issue/test").unwrap_err();
    assert_eq!(err.reason(), "InvalidResponse");
    let message = err.to_string();
    assert!(
        message.contains("issuing_ca") && !message.contains("key-canary"),
        "{message}"
    );
}

#[test]
fn the_request_sends_name_lists_comma_separated_and_only_what_is_set() {
    let request = Request {
        common_name: "app.example.test".into(),
        alt_names: vec!["a.example.test".into(), "localhost".into()],
        ip_sans: vec!["127.0.0.1".into()],
        ttl: Some("30s".into()),
    };
    let params = request.params();
    assert_eq!(params["alt_names"], "a.example.test,localhost");
    assert_eq!(params["ip_sans"], "127.0.0.1");
    assert_eq!(params["ttl"], "30s");
    let bare = Request {
        common_name: "x.example.test".into(),
        ..Request::default()
    }
    .params();
    assert_eq!(bare.keys().collect::<Vec<_>>(), ["common_name"]);
}
