//! Metadata: the live brokers, the controller, the cluster id, and topics with each
//! partition's leader (the broker holding its stream, or the one it is assigned to) and leader
//! epoch (the stream's epoch). A partition without a live leader gets LEADER_NOT_AVAILABLE.
//! A client that names its zone gets its zone's brokers as leaders (`cluster::zones`).
//! Unknown topics are created when both the request (v4+) and the broker allow it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{Broker, Topic};

/// Kafka's "authorized operations not requested" sentinel.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Every topic operation bit (READ..DESCRIBE_CONFIGS), reported until ACLs exist.
const ALL_TOPIC_OPERATIONS: i32 = 0b1_1111_1111_1000;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: MetadataRequest,
    version: i16,
    client: &crate::groups::ClientInfo,
) -> MetadataResponse {
    let zone = crate::cluster::zones::client_zone(&client.client_id);
    let listener = client.listener.as_deref();
    let view = broker.cluster.view();
    // Brokers as reached through the listener the client came in on (one that lacks that
    // listener is left out, as Kafka does).
    let mut brokers: Vec<MetadataResponseBroker> = view
        .brokers
        .values()
        .filter(|b| b.alive)
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    if !brokers.iter().any(|b| b.node_id.0 == broker.config.node_id) {
        // Not registered yet: clients still learn how to reach this broker.
        let (host, port) = broker.advertised_on(listener);
        brokers.push(
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(broker.config.rack.clone().map(StrBytes::from_string)),
        );
    }
    let controller = BrokerId(view.controller.as_ref().map_or(-1, |c| c.node_id));
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let operations =
        if request.include_topic_authorized_operations { ALL_TOPIC_OPERATIONS } else { OPERATIONS_NOT_REQUESTED };
    let mut topics = Vec::new();
    match request.topics {
        // v0: an empty list means all topics; v1+: null means all topics.
        None => {
            topics.extend(broker.topics().iter().map(|t| describe(broker, t, operations, zone.as_deref(), listener)))
        }
        Some(list) if list.is_empty() && version == 0 => {
            topics.extend(broker.topics().iter().map(|t| describe(broker, t, operations, zone.as_deref(), listener)))
        }
        Some(list) => {
            for requested in list {
                let found = match &requested.name {
                    Some(name) => {
                        let name = name.0.as_str();
                        match broker.topic(name) {
                            Some(t) => Ok(t),
                            None if allow_create => broker.auto_create(name).await,
                            None => Err(super::err(ResponseError::UnknownTopicOrPartition, "unknown topic")),
                        }
                    }
                    None => broker
                        .topic_by_id(requested.topic_id)
                        .ok_or_else(|| super::err(ResponseError::UnknownTopicId, "unknown topic id")),
                };
                topics.push(match found {
                    Ok(t) => describe(broker, &t, operations, zone.as_deref(), listener),
                    Err(e) => MetadataResponseTopic::default()
                        .with_error_code(e.code().code())
                        .with_name(requested.name.clone())
                        .with_topic_id(requested.topic_id)
                        .with_topic_authorized_operations(operations),
                });
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(controller)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

/// `zone`: the client's zone, whose brokers are named as leaders (see `cluster::zones`).
/// A leader without an address on `listener` gets LISTENER_NOT_FOUND, as in Kafka.
fn describe(
    broker: &Broker,
    topic: &Topic,
    operations: i32,
    zone: Option<&str>,
    listener: Option<&str>,
) -> MetadataResponseTopic {
    let view = broker.cluster.view();
    let state = broker.engine.catalog().state();
    let partitions = (0..topic.partition_count())
        .map(|i| {
            let index = i as i32;
            let epoch = state.streams.get(&topic.meta.partitions[i]).map_or(0, |s| s.epoch);
            let p = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(i32::try_from(epoch).unwrap_or(i32::MAX));
            let mut leader = view.leader(&state, &topic.meta, index);
            if let Some(zone) = zone {
                if let Some(b) = crate::cluster::zones::zone_broker(&view, zone, leader, &topic.meta.name, index) {
                    leader = leader.map(|_| b.node_id);
                }
            }
            let reachable = |id: i32| view.brokers.get(&id).is_none_or(|b| b.endpoint(listener).is_some());
            match leader {
                Some(leader) if !reachable(leader) => p
                    .with_error_code(ResponseError::ListenerNotFound.code())
                    .with_leader_id(BrokerId(-1))
                    .with_replica_nodes(Vec::new())
                    .with_isr_nodes(Vec::new()),
                Some(leader) => {
                    let node = BrokerId(leader);
                    p.with_leader_id(node).with_replica_nodes(vec![node]).with_isr_nodes(vec![node])
                }
                None => p
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_replica_nodes(Vec::new())
                    .with_isr_nodes(Vec::new()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.meta.name.clone()))))
        .with_topic_id(topic.meta.id)
        .with_is_internal(topic.meta.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}
