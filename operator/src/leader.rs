//! Leader election on a `coordination.k8s.io/v1` Lease, so several operator replicas are safe:
//! only the holder reconciles.
//!
//! The holder renews every [`RENEW_EVERY`]; a Lease not renewed for its duration may be taken
//! by another replica. Every write is a replace carrying the `resourceVersion` read, so two
//! replicas racing for an expired Lease cannot both win. A holder that cannot renew before
//! its Lease expires stops the process ([`hold`] returns), since another replica may be
//! reconciling by then; Kubernetes restarts it as a candidate.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Acquired,
    Renewed,
    /// Someone else holds an unexpired Lease.
    HeldBy(String),
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElection { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into() }
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire_time.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One try to acquire or renew the Lease at time `now`.
    pub async fn try_acquire(&self, now: Timestamp) -> kube::Result<Attempt> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.spec(None, 0, now)),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Attempt::Acquired);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if holder == self.identity {
            lease.spec = Some(self.spec(spec.acquire_time, transitions, now));
            self.api.replace(&self.name, &PostParams::default(), &lease).await?;
            return Ok(Attempt::Renewed);
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let expired = match &spec.renew_time {
            Some(renewed) => Duration::try_from(now.duration_since(renewed.0)).is_ok_and(|age| age > duration),
            None => true,
        };
        if !holder.is_empty() && !expired {
            return Ok(Attempt::HeldBy(holder));
        }
        lease.spec = Some(self.spec(None, transitions + 1, now));
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(Attempt::Acquired)
    }

    /// Gives the Lease up (on shutdown) so another replica leads at once instead of after the
    /// Lease expires. Nothing happens if another replica holds it.
    pub async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        info!(lease = self.name, "released the leader lease");
        Ok(())
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire(Timestamp::now()).await {
                Ok(Attempt::Acquired | Attempt::Renewed) => {
                    info!(lease = self.name, identity = self.identity, "became leader");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => tracing::debug!(holder, "lease held by another replica"),
                Err(e) => warn!(error = %e, "cannot acquire the leader lease"),
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Renews the Lease until it cannot be renewed in time; returns then.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_acquire(Timestamp::now()).await {
                Ok(Attempt::Renewed | Attempt::Acquired) => last_renewal = tokio::time::Instant::now(),
                Ok(Attempt::HeldBy(holder)) => {
                    warn!(holder, "lost the leader lease");
                    return;
                }
                Err(e) => warn!(error = %e, "cannot renew the leader lease"),
            }
            // Stop before the Lease may have expired in another replica's eyes.
            if last_renewal.elapsed() + RENEW_EVERY >= LEASE_DURATION {
                warn!("could not renew the leader lease in time");
                return;
            }
        }
    }
}
