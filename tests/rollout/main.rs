//! Rolling restarts (issue 5): a change of a synced Secret's content restarts the workloads that
//! use it exactly once — coalesced per workload, never on a first sync, an unchanged refresh or
//! an operator restart — and a failed restart never fails the sync.
//!
//! kube-controller-manager runs the Deployment, ReplicaSet, StatefulSet and DaemonSet
//! controllers but no kubelet runs Pods, so a restart shows as a new ReplicaSet (Deployment) or a
//! new ControllerRevision (StatefulSet, DaemonSet), and `metadata.generation` counts template
//! changes exactly.

#![allow(clippy::panic)] // test helpers panic on purpose

#[path = "../common/mod.rs"]
mod common;

mod workloads;

mod auto;
mod coalescing;
mod failures;
mod leases;
mod restart;
mod targets;
