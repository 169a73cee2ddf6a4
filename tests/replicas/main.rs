//! `config/default` with the two replicas it ships, as pods on a real node: one leads, and deleting
//! the leader pod hands over to another replica without a Secret write or a re-issued lease.
//! (`tests/cluster` runs one replica, with its probes: replicas on one host network cannot share
//! the probed port; see `xtask::deploy::overlay`.)

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use common::cluster::installed;
use common::{OPERATOR_NS, TestNs, handover};

#[tokio::test]
async fn deleting_the_leader_pod_of_the_default_install_hands_over_without_a_secret_write_or_a_new_lease() {
    let op = installed("default", OPERATOR_NS, 2);
    let t = TestNs::new_in(op, "replicas").await;
    handover::deleting_the_leader_pod_hands_over(op, OPERATOR_NS, &t).await;
}
