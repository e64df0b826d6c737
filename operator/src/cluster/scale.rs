//! Scaling decisions, kept pure so every case is a unit test.
//!
//! Scale-out grows the StatefulSet at once (Parallel pod management starts every new broker
//! together). Scale-in drains the brokers being removed through the admin API first and
//! shrinks the StatefulSet only when the cluster reports them empty, so no partition is ever
//! left on a broker that is going away. Drains the operator started are remembered in
//! `status.draining` and cancelled when those node ids come back.

use std::collections::BTreeSet;
use std::time::Duration;

use automq_crds::cluster::BrokerAutoscaling;

use crate::admin::ClusterState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePlan {
    /// `spec.replicas` of the StatefulSet to apply.
    pub replicas: i32,
    /// Brokers to start draining.
    pub drain: Vec<i32>,
    /// Brokers whose (operator-started) drain to cancel.
    pub undrain: Vec<i32>,
    /// Drains the operator owns after this step (`status.draining`).
    pub draining: Vec<i32>,
    /// Why the StatefulSet is not at `target` yet.
    pub waiting: Option<String>,
}

/// Plans one step of one pool (node ids `base + ordinal`) from `current` StatefulSet replicas
/// (None: no StatefulSet yet) towards `target`, given what the cluster reports and the drains
/// recorded in status (this pool's). Going to zero drains first only when `drain_to_zero`
/// (other pools run on: the brokers leave the cluster); a whole cluster stopping simply stops,
/// each broker handing off to the bucket on SIGTERM.
pub fn plan(
    base: i32,
    current: Option<i32>,
    target: i32,
    state: Option<&ClusterState>,
    recorded: &[i32],
    drain_to_zero: bool,
) -> ScalePlan {
    let recorded: BTreeSet<i32> = recorded.iter().copied().collect();
    let current = match current {
        Some(c) if c > target && (target > 0 || drain_to_zero) => c,
        // Growing, steady, new, or going to zero (nowhere to move partitions to: brokers hand
        // off to the bucket on SIGTERM).
        _ => {
            let (undrain, keep): (Vec<i32>, Vec<i32>) = recorded.into_iter().partition(|id| *id < base + target);
            return ScalePlan { replicas: target, drain: vec![], undrain, draining: keep, waiting: None };
        }
    };
    let leaving: Vec<i32> = (base + target..base + current).collect();
    let draining: Vec<i32> =
        recorded.iter().copied().chain(leaving.iter().copied()).collect::<BTreeSet<_>>().into_iter().collect();
    // Brokers below the target that the operator drained earlier come back.
    let undrain: Vec<i32> = recorded.iter().copied().filter(|id| *id < base + target).collect();
    let draining: Vec<i32> = draining.into_iter().filter(|id| *id >= base + target).collect();
    let Some(state) = state else {
        return ScalePlan {
            replicas: current,
            drain: vec![],
            undrain,
            draining,
            waiting: Some("waiting for the cluster state to drain brokers before scaling in".into()),
        };
    };
    let mut drain = Vec::new();
    let mut busy = Vec::new();
    for id in &leaving {
        match state.brokers.iter().find(|b| b.node_id == *id) {
            // Never registered (the pod never came up): nothing to move.
            None => {}
            Some(b) => {
                if !b.draining {
                    drain.push(*id);
                }
                if !b.draining || !b.is_empty() {
                    busy.push(format!("{id} ({} partitions)", b.assigned.max(b.leading)));
                }
            }
        }
    }
    if busy.is_empty() {
        ScalePlan { replicas: target, drain, undrain, draining, waiting: None }
    } else {
        let waiting = Some(format!("draining broker {} before scaling in to {target}", busy.join(", ")));
        ScalePlan { replicas: current, drain, undrain, draining, waiting }
    }
}

/// Load measured over the last interval, summed over the brokers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Produce bytes per second, all brokers.
    pub bytes_in_per_sec: Option<f64>,
    /// Average CPU use as a fraction of the request (0.5 = 50%).
    pub cpu_utilization: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: i32,
    pub reason: String,
    /// The load needed `current` brokers or more (resets the scale-in stabilization window).
    pub busy: bool,
}

/// The replicas the policy asks for, given `current` and the measured load. Scale-out is
/// immediate; scale-in waits until the load has needed fewer brokers for the stabilization
/// window (`quiet_for`: time since the load last needed `current`).
pub fn autoscale(policy: &BrokerAutoscaling, current: i32, load: Load, quiet_for: Option<Duration>) -> Decision {
    let mut wanted: Option<(i32, String)> = None;
    let mut consider = |n: f64, why: String| {
        let n = n.ceil().max(1.0) as i32;
        if wanted.as_ref().is_none_or(|(w, _)| n > *w) {
            wanted = Some((n, why));
        }
    };
    if let (Some(target), Some(rate)) =
        (policy.target_bytes_in_per_broker.as_ref().and_then(quantity_bytes), load.bytes_in_per_sec)
    {
        if target > 0.0 {
            consider(rate / target, format!("bytes in {} /s against {} /s per broker", human(rate), human(target)));
        }
    }
    if let (Some(target), Some(util)) = (policy.target_cpu_utilization, load.cpu_utilization) {
        consider(
            current as f64 * util * 100.0 / target as f64,
            format!("CPU {:.0}% of request against target {target}%", util * 100.0),
        );
    }
    let Some((wanted, why)) = wanted else {
        return Decision { replicas: current, reason: "no load measured yet".into(), busy: true };
    };
    let wanted = wanted.clamp(policy.min_replicas, policy.max_replicas);
    if wanted >= current {
        return Decision { replicas: wanted, reason: why, busy: true };
    }
    let window = Duration::from_secs(policy.scale_down_stabilization_seconds.unwrap_or(300).max(0) as u64);
    match quiet_for {
        Some(q) if q >= window => Decision { replicas: wanted, reason: why, busy: false },
        _ => Decision {
            replicas: current,
            reason: format!("{why}: {wanted} would do, waiting {}s of stable load before scaling in", window.as_secs()),
            busy: false,
        },
    }
}

/// A Quantity as bytes (`50Mi`, `1G`, `1000`).
pub fn quantity_bytes(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<f64> {
    parse_quantity(&q.0)
}

/// Parses a Kubernetes quantity (`500m`, `2`, `50Mi`, `1.5G`) to a number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * factor)
}

fn human(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else if bytes >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::BrokerState;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn broker(node_id: i32, draining: bool, partitions: usize) -> BrokerState {
        BrokerState {
            node_id,
            alive: true,
            draining,
            leaving: false,
            ready: !draining,
            assigned: partitions,
            leading: partitions,
        }
    }

    fn state(brokers: Vec<BrokerState>) -> ClusterState {
        ClusterState { cluster_id: "c".into(), controller: None, brokers }
    }

    #[test]
    fn scale_out_grows_at_once_and_cancels_earlier_drains() {
        let plan = plan(0, Some(3), 5, None, &[3, 4], false);
        assert_eq!(
            plan,
            ScalePlan { replicas: 5, drain: vec![], undrain: vec![3, 4], draining: vec![], waiting: None }
        );
    }

    #[test]
    fn scale_in_drains_first_then_shrinks() {
        let busy = state(vec![broker(0, false, 4), broker(1, false, 4), broker(2, false, 4)]);
        let first = plan(0, Some(3), 1, Some(&busy), &[], false);
        assert_eq!(first.replicas, 3);
        assert_eq!(first.drain, vec![1, 2]);
        assert_eq!(first.draining, vec![1, 2]);
        assert!(first.waiting.as_deref().unwrap().contains("draining broker 1 (4 partitions), 2 (4 partitions)"));

        let moving = state(vec![broker(0, false, 10), broker(1, true, 2), broker(2, true, 0)]);
        let second = plan(0, Some(3), 1, Some(&moving), &first.draining, false);
        assert_eq!((second.replicas, second.drain.clone()), (3, vec![]));

        let empty = state(vec![broker(0, false, 12), broker(1, true, 0), broker(2, true, 0)]);
        let last = plan(0, Some(3), 1, Some(&empty), &second.draining, false);
        assert_eq!(
            last,
            ScalePlan { replicas: 1, drain: vec![], undrain: vec![], draining: vec![1, 2], waiting: None }
        );
        // Steady afterwards: the drains stay recorded until the ids come back.
        assert_eq!(plan(0, Some(1), 1, Some(&empty), &last.draining, false).draining, vec![1, 2]);
    }

    #[test]
    fn scale_in_waits_without_cluster_state() {
        let p = plan(0, Some(4), 3, None, &[], false);
        assert_eq!(p.replicas, 4);
        assert!(p.waiting.is_some());
    }

    #[test]
    fn a_pool_drains_its_own_node_ids_and_to_zero_when_others_remain() {
        let s = state(vec![broker(0, false, 6), broker(1000, false, 3), broker(1001, false, 3)]);
        let p = plan(1000, Some(2), 1, Some(&s), &[], false);
        assert_eq!((p.replicas, p.drain.clone()), (2, vec![1001]));
        let gone = plan(1000, Some(2), 0, Some(&s), &[], true);
        assert_eq!((gone.replicas, gone.drain.clone(), gone.draining.clone()), (2, vec![1000, 1001], vec![1000, 1001]));
        let stop = plan(1000, Some(2), 0, Some(&s), &[], false);
        assert_eq!((stop.replicas, stop.drain), (0, vec![]), "a whole cluster stopping does not drain");
        let back = plan(1000, Some(1), 2, Some(&s), &[1001], false);
        assert_eq!((back.undrain, back.draining), (vec![1001], vec![]));
    }

    #[test]
    fn unregistered_brokers_need_no_drain() {
        let s = state(vec![broker(0, false, 3)]);
        assert_eq!(plan(0, Some(2), 1, Some(&s), &[], false).replicas, 1);
    }

    fn policy(min: i32, max: i32) -> BrokerAutoscaling {
        BrokerAutoscaling {
            min_replicas: min,
            max_replicas: max,
            target_bytes_in_per_broker: Some(Quantity("10Mi".into())),
            target_cpu_utilization: Some(70),
            scale_down_stabilization_seconds: Some(60),
        }
    }

    #[test]
    fn autoscaler_scales_out_at_once_and_in_after_the_window() {
        let mib = 1024.0 * 1024.0;
        let load = Load { bytes_in_per_sec: Some(45.0 * mib), cpu_utilization: Some(0.3) };
        let up = autoscale(&policy(1, 10), 3, load, None);
        assert_eq!((up.replicas, up.busy), (5, true), "{}", up.reason);

        let light = Load { bytes_in_per_sec: Some(5.0 * mib), cpu_utilization: Some(0.2) };
        let early = autoscale(&policy(1, 10), 5, light, Some(Duration::from_secs(10)));
        assert_eq!(early.replicas, 5, "{}", early.reason);
        let late = autoscale(&policy(2, 10), 5, light, Some(Duration::from_secs(61)));
        assert_eq!(late.replicas, 2, "clamped to minReplicas: {}", late.reason);

        let cpu_bound = Load { bytes_in_per_sec: Some(1.0), cpu_utilization: Some(0.95) };
        assert_eq!(autoscale(&policy(1, 4), 3, cpu_bound, None).replicas, 4, "clamped to maxReplicas");
        let unknown = Load { bytes_in_per_sec: None, cpu_utilization: None };
        assert_eq!(autoscale(&policy(1, 4), 3, unknown, None).replicas, 3);
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("50Mi"), Some(50.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("12x"), None);
    }
}
