//! Produce: validates and appends record batches. Partitions of one request are appended
//! concurrently; each partition's batches are enqueued in order before the next request of the
//! connection is read, and the response is sent once everything is durable (acks=1 and
//! acks=all alike; acks=0 sends none).

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::error::Error;
use crate::metrics::TopicLabels;
use crate::partition::Partition;

pub(super) async fn handle(broker: Arc<Broker>, request: ProduceRequest, _version: i16, client_id: &str) -> Reply {
    let zone = crate::cluster::zones::client_zone(client_id);
    let acks = request.acks;
    if !matches!(acks, -1..=1) {
        let response = refuse_all(&request, ResponseError::InvalidRequiredAcks);
        return Reply::Now(if acks == 0 { None } else { Some(ResponseKind::Produce(response)) });
    }
    // Enqueue every partition now, before the connection reads its next request (this fixes
    // the order); answer once everything is durable.
    if let Err(e) = broker.engine.wait_for_space().await {
        let e = crate::error::Error::from(e);
        let response = refuse_all(&request, e.code());
        return Reply::Now(if acks == 0 { None } else { Some(ResponseKind::Produce(response)) });
    }
    let now = now_ms();
    let mut topics = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        // Internal topics (consumer offsets) are written by the broker only: a client that
        // could produce there could forge any group's committed offsets.
        let topic = broker.auto_create(&name).await.and_then(|t| {
            if t.meta.internal {
                Err(super::err(
                    ResponseError::InvalidTopicException,
                    format!("clients cannot write to internal topic {name}"),
                ))
            } else if let Some(link) = t.meta.configs.get(crate::link::LINK_CONFIG) {
                if crate::link::links(&broker).get(link).is_some_and(|l| l.producer_forwarding) {
                    return Ok(t); // forwarded to the source below
                }
                // Kafka's answer for a read-only mirror: not retriable, so producers fail fast.
                Err(super::err(
                    ResponseError::InvalidRequest,
                    format!("topic {name} is a read-only mirror of link {link:?} until it is promoted"),
                ))
            } else {
                Ok(t)
            }
        });
        let mut partitions = Vec::new();
        for data in topic_data.partition_data {
            let index = data.index;
            let records = data.records.unwrap_or_default();
            let bytes = records.len() as u64;
            let enqueued: Result<Pending, Error> = match &topic {
                Err(e) => Err(super::err(e.code(), e.to_string())),
                Ok(topic) if topic.meta.configs.contains_key(crate::link::LINK_CONFIG) => {
                    forward(&broker, topic, index, records, request.timeout_ms).await.map(Pending::Relayed)
                }
                Ok(topic) => match led_or_arriving(&broker, topic, index).await {
                    Err(e) if e.code() == ResponseError::NotLeaderOrFollower && zone.is_some() => {
                        relay(&broker, topic, index, records, zone.as_deref().unwrap_or_default())
                            .await
                            .map(Pending::Relayed)
                    }
                    Err(e) => Err(e),
                    Ok(p) => {
                        p.count_traffic(bytes, 0);
                        p.enqueue(&broker.engine, records, &topic.config, now).map(|e| Pending::Local(p.clone(), e))
                    }
                },
            };
            partitions.push((index, bytes, enqueued));
        }
        topics.push((topic_data.name, partitions));
    }
    let fut = async move {
        let mut responses = Vec::new();
        for (name, partitions) in topics {
            let topic = name.0.to_string();
            let waits = partitions.into_iter().map(|(index, bytes, enqueued)| {
                let broker = broker.clone();
                async move {
                    let result = match enqueued {
                        Ok(Pending::Local(partition, enqueued)) => enqueued.durable(&partition, &broker.engine).await,
                        Ok(Pending::Relayed(outcome)) => Ok(outcome),
                        Err(e) => Err(e),
                    };
                    (index, bytes, result)
                }
            });
            let mut partition_responses = Vec::new();
            for (index, bytes, result) in join_all(waits).await {
                partition_responses.push(match result {
                    Ok(o) => {
                        broker.metrics.bytes_in.get_or_create(&TopicLabels { topic: topic.clone() }).inc_by(bytes);
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_base_offset(o.base_offset)
                            .with_log_append_time_ms(o.log_append_time)
                            .with_log_start_offset(o.log_start_offset)
                    }
                    Err(e) => {
                        broker.metrics.error("Produce", e.code());
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_error_code(e.code().code())
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                            .with_error_message(super::message(&e))
                    }
                });
            }
            responses
                .push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        if acks == 0 {
            None
        } else {
            Some(ResponseKind::Produce(ProduceResponse::default().with_responses(responses)))
        }
    };
    Reply::Later(Box::pin(fut))
}

fn refuse_all(request: &ProduceRequest, code: ResponseError) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(
                t.partition_data
                    .iter()
                    .map(|p| {
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code.code())
                            .with_base_offset(-1)
                    })
                    .collect(),
            )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The partition if this broker leads it, waiting briefly when it is assigned here and still
/// opening (a topic created a moment ago, a partition moving in): a client would otherwise
/// retry, and an acks=0 producer would lose the batch.
async fn led_or_arriving(
    broker: &Arc<Broker>,
    topic: &crate::broker::Topic,
    index: i32,
) -> Result<Arc<Partition>, Error> {
    match topic.led(index) {
        Err(e) if e.code() == ResponseError::NotLeaderOrFollower => {
            if broker.cluster.view().assigned(&topic.meta.name, index) == Some(broker.config.node_id) {
                broker.wait_led(&topic.meta.name, index, std::time::Duration::from_secs(2)).await
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// A partition's share of a produce: enqueued here, or already appended by its leader in
/// another zone (relayed through the bucket).
enum Pending {
    Local(Arc<Partition>, crate::partition::Enqueued),
    Relayed(crate::partition::AppendOutcome),
}

/// A mirror topic whose link forwards produce: the source answers (see `crate::link::forward`).
async fn forward(
    broker: &Arc<Broker>,
    topic: &crate::broker::Topic,
    index: i32,
    records: bytes::Bytes,
    timeout_ms: i32,
) -> Result<crate::partition::AppendOutcome, Error> {
    let name = &topic.meta.name;
    let link = topic.meta.configs.get(crate::link::LINK_CONFIG).cloned().unwrap_or_default();
    let Some(spec) = crate::link::links(broker).remove(&link).filter(|l| l.producer_forwarding) else {
        return Err(super::err(
            ResponseError::InvalidRequest,
            format!("topic {name} is a read-only mirror of link {link:?} until it is promoted"),
        ));
    };
    if usize::try_from(index).map_or(true, |i| i >= topic.partition_count()) {
        return Err(super::err(ResponseError::UnknownTopicOrPartition, format!("{name} has no partition {index}")));
    }
    let mut forwarders = broker.mirrors.forwarders.lock().await;
    let forwarder = forwarders.entry(link.clone()).or_default();
    forwarder.produce(&spec, &link, name, index, records, timeout_ms.clamp(1000, 60_000)).await
}

/// For a client of `zone` that sent a partition led in another zone to this broker of its
/// zone: relays the batches through the bucket (in order: the next request of the connection
/// waits, so an idempotent producer's sequences stay in order).
async fn relay(
    broker: &Arc<Broker>,
    topic: &crate::broker::Topic,
    index: i32,
    records: bytes::Bytes,
    zone: &str,
) -> Result<crate::partition::AppendOutcome, Error> {
    let view = broker.cluster.view();
    let state = broker.engine.catalog().state();
    let not_leader = || {
        Error::kafka(
            ResponseError::NotLeaderOrFollower,
            format!("this broker does not lead {}-{index}", topic.meta.name),
        )
    };
    if broker.config.rack.as_deref() != Some(zone) {
        return Err(not_leader());
    }
    let leader = view.leader(&state, &topic.meta, index).and_then(|l| view.brokers.get(&l)).ok_or_else(not_leader)?;
    crate::cluster::relay::relay_produce(broker, leader, &topic.meta.name, index, records).await
}
