//! Restarts coalesced by design, not by refresh phase: when a sync finds new content that
//! schedules a workload restart, the other VaultSecrets of the namespace that may restart the
//! same workloads are synced at once, reading Vault fresh. A change in Vault behind several
//! Secrets thus reaches all of them within the debounce window, and the workload restarts once,
//! whatever the refresh phases (`src/controller/schedule.rs`) would have spread them over.
//!
//! "May restart the same workloads": explicit targets in common, or `auto` on either side (which
//! workloads use a Secret is only known by listing them; a few extra fresh reads cost less than
//! a second restart). A nudged sync that finds a change nudges in turn; one that finds none does
//! not, so it ends.

use futures::channel::mpsc;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::packed::Packed;
use super::tracker::Tracker;
use crate::api::{Rollout, VaultSecret};

/// The VaultSecrets the controller knows, and the way to make one sync now.
pub struct Siblings {
    store: Store<Packed>,
    nudges: mpsc::UnboundedSender<ObjectRef<VaultSecret>>,
}

impl Siblings {
    pub fn new(store: Store<Packed>, nudges: mpsc::UnboundedSender<ObjectRef<VaultSecret>>) -> Self {
        Self { store, nudges }
    }

    /// Makes every sibling of `vs` due now, with fresh reads. Returns how many.
    pub fn nudge(&self, vs: &VaultSecret, tracker: &Tracker) -> usize {
        let Some(rollout) = vs.spec.rollout.as_ref().filter(|r| r.is_active()) else {
            return 0;
        };
        let (namespace, name) = (vs.namespace(), vs.name_any());
        let mut nudged = 0;
        for other in self.store.state() {
            if !other.rolls_out() || other.namespace() != namespace || other.name_any() == name {
                continue;
            }
            let shares = match other.unpack() {
                Ok(other) => other.spec.rollout.as_ref().is_some_and(|r| overlap(rollout, r)),
                Err(e) => {
                    tracing::error!(error = %e, "sibling of a VaultSecret");
                    false
                }
            };
            let key = other.key();
            if shares && tracker.nudge(&key) && self.nudges.unbounded_send(key).is_ok() {
                nudged += 1;
            }
        }
        nudged
    }
}

/// Whether two `spec.rollout`s may restart a workload in common.
fn overlap(a: &Rollout, b: &Rollout) -> bool {
    (a.auto && b.is_active()) || (b.auto && a.is_active()) || a.targets.iter().any(|t| b.targets.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RolloutTarget, WorkloadKind};

    fn rollout(auto: bool, targets: &[&str]) -> Rollout {
        Rollout {
            auto,
            targets: targets
                .iter()
                .map(|name| RolloutTarget {
                    kind: WorkloadKind::Deployment,
                    name: (*name).into(),
                })
                .collect(),
            debounce: None,
        }
    }

    #[test]
    fn rollouts_overlap_on_a_common_target_or_auto() {
        assert!(overlap(&rollout(false, &["a", "b"]), &rollout(false, &["b"])));
        assert!(!overlap(&rollout(false, &["a"]), &rollout(false, &["b"])));
        assert!(overlap(&rollout(true, &[]), &rollout(false, &["b"])));
        assert!(overlap(&rollout(false, &["a"]), &rollout(true, &[])));
        assert!(
            !overlap(&rollout(true, &[]), &rollout(false, &[])),
            "an inactive rollout restarts nothing"
        );
    }
}
