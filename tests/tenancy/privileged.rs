//! Acceptance 7: Secret types that mint or carry cluster credentials cannot be written.

use crate::team::Team;

#[tokio::test]
async fn privileged_destination_types_are_refused_by_the_api_server() {
    let team = Team::new("privileged").await;
    for type_ in ["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"] {
        let mut spec = team.spec(&team.t.path("x"));
        spec["destination"] = serde_json::json!({"type": type_});
        match team.t.create_vs("minted", spec).await {
            Ok(_) => panic!("the API server accepted destination type {type_}"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{type_}: {status:?}");
                assert!(
                    status.message.contains("privileged Secret types"),
                    "{type_}: {}",
                    status.message
                );
            }
            Err(e) => panic!("{type_}: unexpected error {e}"),
        }
    }
}
