//! What the operator's ServiceAccount may and may not do, asked of the API server's authorizer,
//! for `config/rbac` (cluster-wide) and `config/namespaced` (one namespace).

#![allow(clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

use super::{CONFIG, OPERATOR_NS, OPERATOR_USER, install_namespaced, install_rbac, kubectl};
use crate::common::{TestNs, within};

/// Where an access check applies: a namespace, or every namespace (and cluster-scoped objects).
#[derive(Clone, Copy)]
enum At<'a> {
    Ns(&'a str),
    Everywhere,
}

/// Whether the API server's authorizer lets ServiceAccount `user` (`system:serviceaccount:NS:NAME`)
/// `verb` `resource` (`plural[.group][/subresource]`): a SubjectAccessReview with the groups the
/// API server gives that ServiceAccount's tokens. Unlike `kubectl auth can-i`, it needs no
/// discovery, so it also answers for kinds the cluster does not serve (Argo Rollouts).
async fn can_i(client: &Client, user: &str, verb: &str, resource: &str, at: At<'_>) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let sa_namespace = user.split(':').nth(2).expect("a ServiceAccount's user name");
    let groups = [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{sa_namespace}"),
        "system:authenticated",
    ];
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: match at {
                    At::Ns(ns) => Some(ns.to_owned()),
                    At::Everywhere => None,
                },
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Checks every `(verb, resource, where)` against `allowed`, and panics listing all mismatches.
/// The first check is retried until RBAC has caught up with a fresh binding.
async fn assert_access(client: &Client, user: &str, allowed: bool, checks: &[(&str, &str, At<'_>)]) {
    if allowed && let Some((verb, resource, at)) = checks.first() {
        within(&format!("{user} may {verb} {resource}"), async {
            while !can_i(client, user, verb, resource, *at).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }
    let mut wrong = Vec::new();
    for (verb, resource, at) in checks {
        if can_i(client, user, verb, resource, *at).await != allowed {
            wrong.push(match at {
                At::Ns(ns) => format!("{verb} {resource} in {ns}"),
                At::Everywhere => format!("{verb} {resource} everywhere"),
            });
        }
    }
    let can = if allowed { "cannot" } else { "can" };
    assert!(wrong.is_empty(), "{user} {can}: {}", wrong.join(", "));
}

#[tokio::test]
async fn the_operator_service_account_may_do_its_job_and_nothing_else() {
    let t = TestNs::new("rbac").await;
    install_rbac(t.op);
    let (app, own) = (At::Ns(&t.ns), At::Ns(OPERATOR_NS));
    assert_access(
        &t.client,
        OPERATOR_USER,
        true,
        &[
            ("list", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("watch", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("patch", "vaultsecrets.vaultsync.dev", app),
            ("patch", "vaultsecrets.vaultsync.dev/status", app),
            ("list", "secrets", At::Everywhere),
            ("watch", "secrets", At::Everywhere),
            ("get", "secrets", app),
            ("create", "secrets", app),
            ("patch", "secrets", app),
            ("delete", "secrets", app),
            ("get", "serviceaccounts", app),
            ("create", "serviceaccounts/token", app),
            ("create", "events.events.k8s.io", app),
            ("patch", "events.events.k8s.io", app),
            ("get", "deployments.apps", app),
            ("list", "deployments.apps", app),
            ("patch", "deployments.apps", app),
            ("patch", "statefulsets.apps", app),
            ("patch", "daemonsets.apps", app),
            ("patch", "rollouts.argoproj.io", app),
            ("get", "leases.coordination.k8s.io", own),
            ("create", "leases.coordination.k8s.io", own),
            ("update", "leases.coordination.k8s.io", own),
        ],
    )
    .await;
    assert_access(
        &t.client,
        OPERATOR_USER,
        false,
        &[
            ("update", "vaultsecrets.vaultsync.dev", app),
            ("delete", "vaultsecrets.vaultsync.dev", app),
            ("update", "secrets", app),
            ("create", "serviceaccounts", app),
            ("impersonate", "serviceaccounts", app),
            ("create", "events", app),
            ("update", "deployments.apps", app),
            ("delete", "deployments.apps", app),
            ("list", "rollouts.argoproj.io", app),
            ("update", "leases.coordination.k8s.io", app),
            ("create", "leases.coordination.k8s.io", app),
            ("delete", "leases.coordination.k8s.io", own),
            ("get", "configmaps", app),
            ("list", "configmaps", At::Everywhere),
            ("create", "pods", app),
            ("create", "pods/exec", app),
            ("create", "clusterroles.rbac.authorization.k8s.io", At::Everywhere),
            ("create", "rolebindings.rbac.authorization.k8s.io", app),
            ("delete", "namespaces", At::Everywhere),
            ("patch", "nodes", At::Everywhere),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_namespaced_install_can_touch_nothing_outside_its_namespace() {
    let t = TestNs::new("single").await;
    let other = TestNs::new("other").await;
    install_namespaced(&t);
    let env = t.kubectl(&[
        "get",
        "deployment",
        "vaultsync",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(env.contains("VAULTSYNC_WATCH_NAMESPACES"), "{env}");

    let user = format!("system:serviceaccount:{}:vaultsync", t.ns);
    let (here, there) = (At::Ns(&t.ns), At::Ns(&other.ns));
    assert_access(
        &t.client,
        &user,
        true,
        &[
            ("list", "vaultsecrets.vaultsync.dev", here),
            ("watch", "vaultsecrets.vaultsync.dev", here),
            ("patch", "vaultsecrets.vaultsync.dev", here),
            ("patch", "vaultsecrets.vaultsync.dev/status", here),
            ("get", "secrets", here),
            ("list", "secrets", here),
            ("create", "secrets", here),
            ("delete", "secrets", here),
            ("create", "serviceaccounts/token", here),
            ("create", "events.events.k8s.io", here),
            ("patch", "deployments.apps", here),
            ("update", "leases.coordination.k8s.io", here),
        ],
    )
    .await;
    assert_access(
        &t.client,
        &user,
        false,
        &[
            ("list", "vaultsecrets.vaultsync.dev", At::Everywhere),
            ("list", "vaultsecrets.vaultsync.dev", there),
            ("get", "secrets", there),
            ("get", "secrets", At::Ns(OPERATOR_NS)),
            ("list", "secrets", At::Everywhere),
            ("create", "secrets", there),
            ("create", "serviceaccounts/token", there),
            ("create", "events.events.k8s.io", there),
            ("patch", "deployments.apps", there),
            ("update", "leases.coordination.k8s.io", there),
            ("get", "configmaps", here),
        ],
    )
    .await;
}

#[tokio::test]
async fn namespace_users_get_vaultsecrets_through_the_built_in_roles() {
    let t = TestNs::new("aggregate").await;
    kubectl(t.op, &["apply", "-k", &format!("{CONFIG}/crd")]);
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        t.create_service_account(user).await;
        let subject = format!("{}:{user}", t.ns);
        t.kubectl(&[
            "create",
            "rolebinding",
            user,
            "--clusterrole",
            role,
            "--serviceaccount",
            &subject,
        ]);
    }
    let (alice, bob) = (
        format!("system:serviceaccount:{}:alice", t.ns),
        format!("system:serviceaccount:{}:bob", t.ns),
    );
    let here = At::Ns(&t.ns);
    let vs = "vaultsecrets.vaultsync.dev";
    let read = [("get", vs, here), ("list", vs, here), ("watch", vs, here)];
    let write = [
        ("create", vs, here),
        ("patch", vs, here),
        ("update", vs, here),
        ("delete", vs, here),
    ];
    // The controller-manager aggregates the roles: the first check waits for it.
    assert_access(&t.client, &alice, true, &[write.as_slice(), read.as_slice()].concat()).await;
    assert_access(&t.client, &bob, true, &read).await;
    assert_access(&t.client, &bob, false, &write).await;
    assert_access(
        &t.client,
        &alice,
        false,
        &[
            ("create", vs, At::Everywhere),
            ("update", "vaultsecrets.vaultsync.dev/status", here),
        ],
    )
    .await;
}
