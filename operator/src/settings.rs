//! `spec.config` overrides: which settings a user may set, and their `AUTOMQ_*` variables.
//!
//! The operator owns the settings that wire a pod into the cluster (listeners, node id,
//! object store, WAL, data directory); everything else a process accepts may be overridden.
//! Unknown keys are refused up front (the process would refuse to start on them, which is a
//! worse place to find out).

use std::collections::BTreeMap;

/// Broker flags a user may set (`automq-broker --help`).
/// (`cluster-id` is left out: it only counts on a fresh bucket.)
pub const BROKER_SETTINGS: &[&str] = &[
    "auto-create-topics",
    "num-partitions",
    "max-request-bytes",
    "connections-max-idle-ms",
    "message-max-bytes",
    "offsets-topic-partitions",
    "log-cleaner-interval-ms",
    "heartbeat-interval-ms",
    "session-timeout-ms",
    "controller-timeout-ms",
    "file-wal-segment-bytes",
    "transaction-state-partitions",
    "transaction-max-timeout-ms",
];

/// Query-node flags a user may set (`automq-query-node --help`).
pub const QUERY_NODE_SETTINGS: &[&str] = &["max-allowed-packet"];

/// The environment variable of a flag: `num-partitions` -> `AUTOMQ_NUM_PARTITIONS`.
pub fn env_name(flag: &str) -> String {
    format!("AUTOMQ_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// The overrides as environment entries, or the first key that is not settable.
pub fn to_env(
    overrides: Option<&BTreeMap<String, String>>,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (key, value) in overrides.into_iter().flatten() {
        let flag = key.trim_start_matches("--");
        if !allowed.contains(&flag) {
            return Err(format!("config key {key:?} cannot be set here; settable keys: {}", allowed.join(", ")));
        }
        env.insert(env_name(flag), value.clone());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_become_variables_and_owned_settings_are_refused() {
        let mut config = BTreeMap::new();
        config.insert("num-partitions".to_string(), "6".to_string());
        let env = to_env(Some(&config), BROKER_SETTINGS).unwrap();
        assert_eq!(env.get("AUTOMQ_NUM_PARTITIONS").map(String::as_str), Some("6"));
        config.insert("object-store".to_string(), "file:///x".to_string());
        let err = to_env(Some(&config), BROKER_SETTINGS).unwrap_err();
        assert!(err.contains("\"object-store\" cannot be set"), "{err}");
    }
}
