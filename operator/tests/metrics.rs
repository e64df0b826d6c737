//! The operator's metric families are exactly those deploy/grafana/operator-metrics.txt lists
//! (the Grafana dashboard check reads that file), so dashboards and code cannot drift apart.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use automq_operator::metrics::Metrics;
use prometheus_client::registry::Registry;

#[test]
fn exported_families_match_the_dashboard_list() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    drop(metrics.reconcile("AutoMQCluster"));
    metrics.failure("AutoMQCluster", &automq_operator::Error::Waiting("x".into()));
    metrics.scaled("AutoMQCluster", true);
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).unwrap();
    let exported: BTreeSet<(String, String)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/operator-metrics.txt");
    let listed: BTreeSet<(String, String)> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect();
    assert_eq!(exported, listed, "update deploy/grafana/operator-metrics.txt (and the dashboards) with the metrics");
}
