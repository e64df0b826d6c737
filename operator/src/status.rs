//! The three conditions every kind reports, built from one summary of the resource's health.

use automq_crds::condition::{self, DEGRADED, PROGRESSING, READY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition's status, reason (CamelCase, stable) and message (for humans).
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub status: bool,
    pub reason: String,
    pub message: String,
}

pub fn report(status: bool, reason: &str, message: impl Into<String>) -> Reported {
    Reported { status, reason: reason.into(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub ready: Reported,
    pub progressing: Reported,
    pub degraded: Reported,
}

impl Health {
    /// The spec cannot be acted on: nothing is changed until it is fixed.
    pub fn invalid(message: impl Into<String>) -> Health {
        let message = message.into();
        Health {
            ready: report(false, "InvalidSpec", message.clone()),
            progressing: report(false, "InvalidSpec", "waiting for a valid spec"),
            degraded: report(true, "InvalidSpec", message),
        }
    }

    /// Applying a child failed.
    pub fn failed(reason: &str, message: impl Into<String>) -> Health {
        let message = message.into();
        Health {
            ready: report(false, reason, message.clone()),
            progressing: report(false, reason, "retrying"),
            degraded: report(true, reason, message),
        }
    }

    /// Working towards the spec (`ready` still false).
    pub fn progressing(reason: &str, message: impl Into<String>) -> Health {
        let message = message.into();
        Health {
            ready: report(false, reason, message.clone()),
            progressing: report(true, reason, message),
            degraded: report(false, "AsExpected", ""),
        }
    }

    pub fn ready(reason: &str, message: impl Into<String>) -> Health {
        Health {
            ready: report(true, reason, message),
            progressing: report(false, "Reconciled", "matches the spec"),
            degraded: report(false, "AsExpected", ""),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.status
    }
}

/// The conditions after `health`, keeping transition times of unchanged ones.
pub fn conditions(
    previous: Option<&Vec<Condition>>,
    health: &Health,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    let mut conditions = previous.cloned().unwrap_or_default();
    for (type_, r) in [(READY, &health.ready), (PROGRESSING, &health.progressing), (DEGRADED, &health.degraded)] {
        condition::set(&mut conditions, type_, r.status, &r.reason, r.message.clone(), generation, now.clone());
    }
    conditions
}

/// A status with `conditions` and `observedGeneration`.
pub trait Conditioned: Clone + PartialEq + Default + serde::Serialize {
    fn conditions(&self) -> Option<&Vec<Condition>>;
    fn set_conditions(&mut self, conditions: Vec<Condition>);
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

macro_rules! conditioned {
    ($($t:ty),*) => {$(
        impl Conditioned for $t {
            fn conditions(&self) -> Option<&Vec<Condition>> {
                self.conditions.as_ref()
            }
            fn set_conditions(&mut self, conditions: Vec<Condition>) {
                self.conditions = Some(conditions);
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    )*};
}

conditioned!(automq_crds::AutoMQClusterStatus, automq_crds::AnalyticsWarehouseStatus, automq_crds::TopicLinkStatus);

/// Writes `status` with the conditions of `health` for `obj` (whose current status is
/// `previous`), unless nothing changed. With `warning`, a Warning event goes out when the
/// `Degraded` reason is new.
pub async fn write<K, S>(
    obj: &K,
    ctx: &crate::Context,
    previous: &S,
    mut status: S,
    health: &Health,
    warning: Option<&str>,
) -> crate::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Conditioned,
{
    use kube::ResourceExt;
    let generation = obj.meta().generation;
    status.set_observed_generation(generation);
    status.set_conditions(conditions(previous.conditions(), health, generation, (ctx.now)()));
    if &status == previous {
        return Ok(());
    }
    crate::apply::apply_status::<K, S>(&ctx.client, &obj.namespace().unwrap_or_default(), &obj.name_any(), &status)
        .await?;
    if let Some(message) = warning {
        let before = condition::get(previous.conditions().map(Vec::as_slice).unwrap_or_default(), DEGRADED)
            .map(|c| (c.status.clone(), c.reason.clone()));
        if before != Some(("True".into(), health.degraded.reason.clone())) {
            ctx.event(obj, true, &health.degraded.reason, message.to_string()).await;
        }
    }
    Ok(())
}
