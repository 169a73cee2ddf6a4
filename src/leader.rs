//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and one syncs.
//!
//! The leader renews the Lease every `duration / 3`; a standby takes it over once it has not
//! been renewed for `duration`. A leader that cannot renew for `duration` stops leading (the
//! process then exits and is restarted), so two leaders never act at once for long. On shutdown
//! the leader releases the Lease so a standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

/// One participant in the election.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    /// Competes for Lease `name` in `namespace` as `identity`, with a lease of `duration`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// Returns once this participant holds the Lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = self.identity, lease = self.name, "became the leader");
                    return;
                }
                Ok(false) if !announced => {
                    tracing::info!(
                        identity = self.identity,
                        lease = self.name,
                        "standing by: another replica leads"
                    );
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Keeps renewing the Lease; returns when leadership is lost.
    pub async fn hold(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break,
                Err(e) if renewed.elapsed() < self.duration => tracing::warn!(error = %e, "cannot renew the Lease"),
                Err(_) => break,
            }
        }
        tracing::error!(identity = self.identity, lease = self.name, "lost leadership");
    }

    /// Gives the Lease up so a standby can take over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "could not release the Lease");
        } else {
            tracing::info!(identity = self.identity, "released the Lease");
        }
    }

    fn retry_period(&self) -> Duration {
        self.duration / 3
    }

    /// Takes or renews the Lease if it is free, expired or ours. Conflicts (another replica
    /// wrote first) count as not acquired.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(&self.identity);
        if !ours && held(spec) {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        let name = lease.name_any();
        conflict_is_false(self.api.replace(&name, &PostParams::default(), &lease).await)
    }
}

/// Whether someone holds the Lease and renewed it within its duration.
fn held(spec: &LeaseSpec) -> bool {
    let (Some(_), Some(renewed), Some(seconds)) =
        (&spec.holder_identity, &spec.renew_time, spec.lease_duration_seconds)
    else {
        return false;
    };
    let expires = renewed.0.as_second() + i64::from(seconds);
    jiff::Timestamp::now().as_second() < expires
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_ago: i64, seconds: i32) -> LeaseSpec {
        let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_ago);
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_held_only_while_renewed_within_its_duration() {
        assert!(held(&spec(Some("a"), 5, 15)));
        assert!(!held(&spec(Some("a"), 20, 15)), "expired");
        assert!(!held(&spec(None, 1, 15)), "released");
    }
}
