//! Producer forwarding: with `producer_forwarding` on, produce requests for a mirror topic are
//! sent to the source partition's leader (batches untouched, acks=all) and the source's answer
//! goes back to the client; the records then come back through the mirror at the same offsets.
//! Producers can so be switched to this cluster before the consumers, and nothing they write
//! is lost: an answer means the source acknowledged it.
//!
//! Forwards of one link go through one connection per source broker, one at a time, in the
//! order the requests arrive (a producer's batches stay in order).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::ResponseError;

use super::client::SourceConnection;
use super::{connect_any, source_metadata, LinkSpec};
use crate::error::{Error, Result};
use crate::partition::AppendOutcome;

/// Source connections and partition leaders of one link.
#[derive(Debug, Default)]
pub struct Forwarder {
    connections: HashMap<String, SourceConnection>,
    leaders: HashMap<(String, i32), String>,
}

fn unavailable(message: impl std::fmt::Display) -> Error {
    Error::kafka(ResponseError::NotLeaderOrFollower, format!("forwarding to the link's source failed: {message}"))
}

impl Forwarder {
    async fn leader(&mut self, spec: &LinkSpec, link: &str, topic: &str, index: i32) -> Result<String> {
        if let Some(address) = self.leaders.get(&(topic.to_string(), index)) {
            return Ok(address.clone());
        }
        let client_id = format!("automq-link-{link}-forward");
        let mut conn = connect_any(&spec.source, &client_id).await.map_err(unavailable)?;
        let metadata = source_metadata(&mut conn, Some(vec![topic.to_string()])).await.map_err(unavailable)?;
        let brokers: HashMap<i32, String> =
            metadata.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        for t in &metadata.topics {
            for p in &t.partitions {
                if let Some(address) = brokers.get(&p.leader_id.0) {
                    self.leaders.insert((topic.to_string(), p.partition_index), address.clone());
                }
            }
        }
        self.connections.entry(conn.address().to_string()).or_insert(conn);
        self.leaders
            .get(&(topic.to_string(), index))
            .cloned()
            .ok_or_else(|| unavailable(format!("{topic}-{index} has no leader")))
    }

    /// Forwards one partition's batches and returns the source's answer.
    pub async fn produce(
        &mut self,
        spec: &LinkSpec,
        link: &str,
        topic: &str,
        index: i32,
        records: Bytes,
        timeout_ms: i32,
    ) -> Result<AppendOutcome> {
        let address = self.leader(spec, link, topic, index).await?;
        if !self.connections.contains_key(&address) {
            let security = super::client::SourceSecurity::of(&spec.source).map_err(unavailable)?;
            let conn = SourceConnection::connect(&address, &format!("automq-link-{link}-forward"), &security)
                .await
                .map_err(unavailable)?;
            self.connections.insert(address.clone(), conn);
        }
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(topic.to_string().into())).with_partition_data(vec![
                PartitionProduceData::default().with_index(index).with_records(Some(records)),
            ]),
        ]);
        let Some(conn) = self.connections.get_mut(&address) else { return Err(unavailable("no connection")) };
        let response = match conn.call(&request, 9).await {
            Ok((response, _)) => response,
            Err(e) => {
                // A broken connection or a moved leader: look both up again next time.
                self.connections.remove(&address);
                self.leaders.retain(|_, a| a != &address);
                return Err(unavailable(e));
            }
        };
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| unavailable("the source answered no partition"))?;
        if p.error_code != 0 {
            let code = ResponseError::try_from_code(p.error_code).unwrap_or(ResponseError::UnknownServerError);
            if code == ResponseError::NotLeaderOrFollower {
                self.leaders.remove(&(topic.to_string(), index));
            }
            let message = p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
            return Err(Error::kafka(code, format!("the link's source refused the forwarded batch: {message}")));
        }
        Ok(AppendOutcome {
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
            log_start_offset: p.log_start_offset,
        })
    }
}
