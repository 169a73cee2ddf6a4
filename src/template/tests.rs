//! The sandbox's reach and bounds, and the filters.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

fn context(pairs: &[(&str, &str)]) -> Context {
    let data: BTreeMap<String, Vec<u8>> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Context {
        data: data.clone(),
        sources: vec![SourceContext {
            name: "db".into(),
            index: 0,
            kind: "kv",
            version: Some(3),
            data,
        }],
        name: "shop".into(),
        namespace: "team-a".into(),
        labels: [("app".to_owned(), "shop".to_owned())].into(),
        annotations: BTreeMap::new(),
    }
}

fn render(text: &str, ctx: &Context) -> Result<String, Error> {
    let templates = [("OUT".to_owned(), text.to_owned())].into();
    let request = protocol::Request::new(&templates, ctx);
    let out = sandbox::render_all(&request.templates, &request.context, |_| {})?;
    Ok(String::from_utf8(out["OUT"].clone()).unwrap())
}

const SECRET: &str = "hunter2-do-not-leak";

#[test]
fn a_database_url_is_composed_from_merged_keys_and_urlencoded() {
    let ctx = context(&[("username", "shop"), ("password", "p@ss word")]);
    let out = render(
        "postgres://{{ username }}:{{ password | urlencode }}@db:5432/shop",
        &ctx,
    )
    .unwrap();
    assert_eq!(out, "postgres://shop:p%40ss%20word@db:5432/shop");
}

#[test]
fn sources_are_reachable_by_name_and_index_with_their_version_and_the_object_metadata() {
    let ctx = context(&[("password", "pw")]);
    let out = render(
        "{{ sources.db.data.password }} {{ sources['0'].version }} {{ data.password }} {{ metadata.namespace }}/{{ metadata.name }} {{ metadata.labels.app }}",
        &ctx,
    )
    .unwrap();
    assert_eq!(out, "pw 3 pw team-a/shop shop");
}

#[test]
fn base64_json_yaml_trim_and_dockerconfigjson_filters_work() {
    let ctx = context(&[("password", " pw \n"), ("encoded", "aGVsbG8=")]);
    assert_eq!(render("{{ 'user:pw' | b64encode }}", &ctx).unwrap(), "dXNlcjpwdw==");
    assert_eq!(render("{{ encoded | b64decode }}", &ctx).unwrap(), "hello");
    assert_eq!(render("{{ password | trim }}", &ctx).unwrap(), "pw");
    assert_eq!(render("{{ {'a': 'b'} | tojson }}", &ctx).unwrap(), "{\"a\":\"b\"}");
    assert_eq!(render("{{ {'a': 'b'} | toyaml }}", &ctx).unwrap(), "a: b\n");
    let doc = render("{{ dockerconfigjson('ghcr.io', 'bot', 'tok') }}", &ctx).unwrap();
    let json: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(json["auths"]["ghcr.io"]["auth"], "Ym90OnRvaw==");
    assert_eq!(json["auths"]["ghcr.io"]["password"], "tok");
    let filtered = render("{{ 'ghcr.io' | dockerconfigjson('bot', 'tok') }}", &ctx).unwrap();
    assert_eq!(filtered, doc, "filter and function agree");
}

#[test]
fn pem_blocks_split_a_bundle_by_label() {
    let bundle = "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nKKK\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
    let ctx = context(&[("bundle", bundle)]);
    assert_eq!(
        render("{{ (bundle | pemblocks('CERTIFICATE'))[0] }}", &ctx).unwrap(),
        "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        render("{{ bundle | pemblocks('CERTIFICATE') | length }}", &ctx).unwrap(),
        "2"
    );
    assert_eq!(render("{{ bundle | pemblocks | length }}", &ctx).unwrap(), "3");
    assert!(
        render("{{ bundle | pemblocks('PRIVATE KEY') | first }}", &ctx)
            .unwrap()
            .contains("KKK")
    );
}

#[test]
fn a_filter_error_of_vaultsync_says_what_went_wrong_without_the_value() {
    let ctx = context(&[("password", SECRET)]);
    let err = render("{{ password | b64decode }}", &ctx).unwrap_err();
    assert!(
        err.message
            .starts_with("b64decode: the value is not valid base64 at line 1"),
        "{err}"
    );
}

#[test]
fn binary_data_is_available_to_b64encode() {
    let mut ctx = context(&[]);
    ctx.data.insert("blob".into(), vec![0xff, 0x00, 0x01]);
    assert_eq!(render("{{ data.blob | b64encode }}", &ctx).unwrap(), "/wAB");
}

#[test]
fn an_undefined_variable_is_an_error_naming_the_key_and_the_position() {
    let ctx = context(&[("password", SECRET)]);
    let err = render("line one\n{{ pasword }}", &ctx).unwrap_err();
    assert_eq!(err.key, "OUT");
    assert!(err.message.contains("line 2"), "{err}");
    assert!(err.message.contains("pasword"), "{err}");
}

#[test]
fn a_syntax_error_names_the_line() {
    let err = render("{{ password ", &context(&[])).unwrap_err();
    assert!(err.message.starts_with("syntax error"), "{err}");
    assert!(err.message.contains("line 1"), "{err}");
}

#[test]
fn error_messages_never_contain_values_of_the_context() {
    let ctx = context(&[("password", SECRET)]);
    for text in [
        "{{ password + 1 }}",
        "{{ password | int + [] }}",
        "{{ password | b64decode }}",
        "{{ password() }}",
        "{{ password.missing }}",
        "{{ password[5:] | nosuchfilter }}",
        "{% for x in password %}{{ x.y }}{% endfor %}",
        "{{ password | attr('x') }}",
    ] {
        let err = render(text, &ctx).unwrap_err();
        assert!(!err.to_string().contains("hunter"), "{text}: {err}");
    }
}

#[test]
fn templates_cannot_include_import_or_extend_other_templates() {
    let ctx = context(&[]);
    for text in [
        "{% include '/etc/passwd' %}",
        "{% import 'x' as x %}",
        "{% extends 'base' %}",
        "{% from 'x' import y %}",
    ] {
        assert!(render(text, &ctx).is_err(), "{text} rendered");
    }
}

#[test]
fn templates_cannot_reach_the_environment_files_the_network_or_other_secrets() {
    let ctx = context(&[]);
    for text in [
        "{{ env.HOME }}",
        "{{ env('HOME') }}",
        "{{ getenv('HOME') }}",
        "{{ lookup('env', 'HOME') }}",
        "{{ readfile('/etc/passwd') }}",
        "{{ file('/etc/passwd') }}",
        "{{ getHostByName('example.com') }}",
        "{{ http_get('http://example.com') }}",
        "{{ secret('other-ns', 'name') }}",
        "{{ config }}",
        "{{ self }}",
        "{{ debug() }}",
    ] {
        assert!(render(text, &ctx).is_err(), "{text} rendered");
    }
}

#[test]
fn a_runaway_loop_runs_out_of_fuel_quickly() {
    let started = Instant::now();
    let err = render(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        &context(&[]),
    )
    .unwrap_err();
    assert!(err.message.contains("too many steps"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn output_beyond_one_mebibyte_is_refused() {
    let err = render("{{ 'x' * 600000 }}{{ 'y' * 600000 }}", &context(&[])).unwrap_err();
    assert!(err.message.contains("exceeds 1048576 bytes"), "{err}");
}

#[test]
fn merged_keys_cannot_shadow_the_reserved_names() {
    let ctx = context(&[("metadata", "x")]);
    assert_eq!(
        render("{{ metadata.name }} {{ data.metadata }}", &ctx).unwrap(),
        "shop x"
    );
}
