//! Leader election on a Lease, against the fake API server.
#![allow(clippy::unwrap_used)]

mod support;

use automq_operator::leader::{Attempt, LeaderElection};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use support::ApiServer;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/automq-system/leases/automq-operator";

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_only_after_expiry() {
    let api = ApiServer::default();
    let a = LeaderElection::new(api.client(), "automq-system", "automq-operator", "operator-a");
    let b = LeaderElection::new(api.client(), "automq-system", "automq-operator", "operator-b");
    let t0: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();

    assert_eq!(a.try_acquire(t0).await.unwrap(), Attempt::Acquired);
    assert_eq!(
        api.take_lines(),
        vec![format!("GET {LEASE}"), format!("POST /apis/coordination.k8s.io/v1/namespaces/automq-system/leases")]
    );
    let lease = api.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);

    // B sees a live holder: no write.
    let t1 = t0 + SignedDuration::from_secs(5);
    assert_eq!(b.try_acquire(t1).await.unwrap(), Attempt::HeldBy("operator-a".into()));
    assert_eq!(api.take_lines(), vec![format!("GET {LEASE}")]);

    // A renews.
    assert_eq!(a.try_acquire(t1).await.unwrap(), Attempt::Renewed);
    assert_eq!(api.take_lines(), vec![format!("GET {LEASE}"), format!("PUT {LEASE}")]);
    assert_eq!(api.get(LEASE).unwrap()["spec"]["renewTime"], json!("2026-12-02T10:00:05.000000Z"));

    // A stops renewing; 15 s later B takes over, counting the transition.
    let t2 = t1 + SignedDuration::from_secs(16);
    assert_eq!(b.try_acquire(t2).await.unwrap(), Attempt::Acquired);
    assert_eq!(api.take_lines(), vec![format!("GET {LEASE}"), format!("PUT {LEASE}")]);
    let lease = api.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(a.try_acquire(t2).await.unwrap(), Attempt::HeldBy("operator-b".into()));

    // B shuts down and releases: A leads at once, without waiting for expiry.
    a.release().await.unwrap();
    assert_eq!(api.get(LEASE).unwrap()["spec"]["holderIdentity"], "operator-b", "only the holder releases");
    b.release().await.unwrap();
    assert!(api.get(LEASE).unwrap()["spec"].get("holderIdentity").is_none());
    assert_eq!(a.try_acquire(t2 + SignedDuration::from_secs(1)).await.unwrap(), Attempt::Acquired);
}
