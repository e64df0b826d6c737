//! Zone awareness: a client that says which zone it is in talks only to brokers of its zone,
//! so no record bytes cross zones over the network (cross-zone traffic is billed; the bucket is
//! regional, and reaching it from any zone is not).
//!
//! A client names its zone with `automq_az=<zone>` (or `zone=<zone>`) anywhere in its client
//! id, or, for fetches only, with Kafka's `client.rack` (the Fetch request's rack id).
//!
//! - **Metadata** answers a zoned client with a broker of its zone as every partition's
//!   leader (the real leader when it is in that zone, else a same-zone broker picked by the
//!   partition, so the load spreads).
//! - **Produce** to such a broker for a partition led in another zone is relayed through the
//!   bucket: the batch is written as an object, the leader is told its key over the internal
//!   API, reads it (regional traffic) and appends it like any produce; its answer (offset, or
//!   the Kafka error) goes back to the client.
//! - **Fetch** from such a broker for a partition led elsewhere is served from the bucket: the
//!   committed data of the partition's stream (any broker can read it), up to the committed
//!   end, which trails the leader by at most its upload interval.
//! - A leader asked to fetch by a client whose rack differs answers, as Kafka does (KIP-392),
//!   with a preferred read replica in the client's rack, if one is alive.

use super::records::{BrokerRecord, ClusterView};

/// The zone in a client id (`automq_az=z` or `zone=z`; ends at `,`, `;`, `&` or a space).
pub fn client_zone(client_id: &str) -> Option<String> {
    for tag in ["automq_az=", "zone="] {
        if let Some(i) = client_id.find(tag) {
            let rest = &client_id[i + tag.len()..];
            let zone: String = rest.chars().take_while(|c| !matches!(c, ',' | ';' | '&' | ' ')).collect();
            if !zone.is_empty() {
                return Some(zone);
            }
        }
    }
    None
}

/// The broker of `zone` that serves a partition for that zone's clients: the leader itself if
/// it is in the zone, else one of the zone's live brokers, picked by the partition.
pub fn zone_broker<'v>(
    view: &'v ClusterView,
    zone: &str,
    leader: Option<i32>,
    topic: &str,
    partition: i32,
) -> Option<&'v BrokerRecord> {
    if let Some(l) = leader.and_then(|l| view.brokers.get(&l)) {
        if l.rack.as_deref() == Some(zone) {
            return Some(l);
        }
    }
    let in_zone: Vec<&BrokerRecord> =
        view.brokers.values().filter(|b| b.alive && !b.leaving && b.rack.as_deref() == Some(zone)).collect();
    if in_zone.is_empty() {
        return None;
    }
    let h = topic.bytes().fold(partition as u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    Some(in_zone[(h % in_zone.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::WalKind;

    #[test]
    fn zones_come_from_the_client_id() {
        assert_eq!(client_zone("automq_az=eu-1a"), Some("eu-1a".into()));
        assert_eq!(client_zone("orders-svc,automq_az=us-east-1b,v2"), Some("us-east-1b".into()));
        assert_eq!(client_zone("rdkafka zone=b"), Some("b".into()));
        assert_eq!(client_zone("rdkafka"), None);
        assert_eq!(client_zone("zone="), None);
    }

    #[test]
    fn a_zone_broker_is_the_leader_when_it_is_in_the_zone_else_a_spread_pick() {
        let mut view = ClusterView::default();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "b"), (4, "c")] {
            view.brokers.insert(
                id,
                BrokerRecord {
                    node_id: id,
                    host: "h".into(),
                    port: 1,
                    listeners: Default::default(),
                    http: "h:2".into(),
                    rack: Some(rack.into()),
                    pool: "default".into(),
                    wal: WalKind::S3,
                    wal_epoch: None,
                    incarnation: 1,
                    alive: true,
                    draining: false,
                    leaving: false,
                    wal_recovered: None,
                },
            );
        }
        assert_eq!(zone_broker(&view, "b", Some(3), "t", 0).map(|b| b.node_id), Some(3));
        let picks: std::collections::BTreeSet<i32> =
            (0..20).filter_map(|p| zone_broker(&view, "b", Some(1), "t", p).map(|b| b.node_id)).collect();
        assert_eq!(picks, [2, 3].into(), "spread over the zone's brokers");
        assert!(zone_broker(&view, "z", Some(1), "t", 0).is_none(), "no broker in that zone");
    }
}
