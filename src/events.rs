//! Kubernetes Events (`events.k8s.io/v1`) about the objects vaultsync acts on.
//!
//! kube's `Recorder` keeps every Event it published in the last six minutes, to merge repeats
//! into a series. vaultsync publishes on transitions only (a write, a failure starting, a
//! restart), so repeats are rare, and at 10,000 VaultSecrets that cache held 22 MiB (heaptrack,
//! `docs/benchmarks.md`). This publisher keeps nothing: one create per Event.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
pub use kube::runtime::events::{Event, EventType};

/// Publishes Events as `controller` (and `instance`, e.g. the pod name).
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> Self {
        Publisher {
            client,
            controller: controller.into(),
            instance: instance.unwrap_or(controller).into(),
        }
    }

    /// Creates `event` about `regarding`, in its namespace. A failure is logged, never fatal: an
    /// Event is a notice, and the status already says what happened.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let body = self.event(event, regarding);
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &body).await {
            tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
        }
    }

    fn event(&self, event: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = jiff::Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        K8sEvent {
            metadata: ObjectMeta {
                // The same scheme as kubectl and client-go: the object's name and a unique suffix.
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_names_its_object_reporter_and_type() {
        // A client is needed to build a Publisher; nothing is sent.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let publisher = Publisher::new(client, "vaultsync", Some("pod-1"));
        let regarding = ObjectReference {
            name: Some("db".into()),
            namespace: Some("team-a".into()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "LoginFailed".into(),
            note: Some("permission denied".into()),
            action: "Sync".into(),
            secondary: None,
        };
        let e = publisher.event(&event, &regarding);
        assert!(e.metadata.name.as_deref().unwrap().starts_with("db."));
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("LoginFailed"));
        assert_eq!(e.reporting_controller.as_deref(), Some("vaultsync"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(e.regarding, Some(regarding));
        assert!(e.event_time.is_some());
    }
}
