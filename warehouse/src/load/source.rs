//! The Kafka side of a routine load: a real Kafka client (rskafka) speaking the protocol to
//! any Kafka-compatible cluster.

use std::time::Duration;

use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;

use super::job::{LoadSpec, StartAt};

/// A source failure, classified by what the job should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Worth retrying (broker unreachable, leader moving...).
    Transient(String),
    /// Retrying will not help (topic or partition gone, offset out of range): pause.
    Fatal(String),
}

impl SourceError {
    pub fn message(&self) -> &str {
        match self {
            SourceError::Transient(m) | SourceError::Fatal(m) => m,
        }
    }
}

fn classify(context: &str, e: KafkaError) -> SourceError {
    match &e {
        KafkaError::ServerError { protocol_error: ProtocolError::UnknownTopicOrPartition, .. } => {
            SourceError::Fatal(format!("{context}: the topic or partition does not exist (deleted?)"))
        }
        KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. } => SourceError::Fatal(format!(
            "{context}: offset out of range (removed by retention?); ALTER ROUTINE LOAD the kafka_offsets, then RESUME"
        )),
        KafkaError::ServerError {
            protocol_error: ProtocolError::TopicAuthorizationFailed | ProtocolError::SaslAuthenticationFailed,
            ..
        } => SourceError::Fatal(format!("{context}: not authorized ({})", short(&e))),
        _ => SourceError::Transient(format!("{context}: {}", short(&e))),
    }
}

fn short(e: &KafkaError) -> String {
    let s = e.to_string();
    s.split(", request:").next().unwrap_or(&s).to_string()
}

/// Connects to the job's cluster. Retries inside the client stop after a few seconds so a
/// failure becomes visible to the job rather than an endless silent wait.
pub async fn connect(spec: &LoadSpec) -> Result<Client, SourceError> {
    ClientBuilder::new(spec.brokers.clone())
        .client_id(spec.client_id.clone())
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(Duration::from_secs(5)),
        })
        .build()
        .await
        .map_err(|e| classify(&format!("cannot reach Kafka at {}", spec.brokers.join(",")), e))
}

/// The topic's partitions.
pub async fn partitions(client: &Client, topic: &str) -> Result<Vec<i32>, SourceError> {
    let topics = client.list_topics().await.map_err(|e| classify("listing topics", e))?;
    match topics.into_iter().find(|t| t.name == topic) {
        Some(t) => Ok(t.partitions.into_iter().collect()),
        None => Err(SourceError::Fatal(format!("topic '{topic}' does not exist"))),
    }
}

pub async fn partition(client: &Client, topic: &str, p: i32) -> Result<PartitionClient, SourceError> {
    client
        .partition_client(topic.to_string(), p, UnknownTopicHandling::Error)
        .await
        .map_err(|e| classify(&format!("partition {p}"), e))
}

/// A starting point as an offset.
pub async fn resolve(pc: &PartitionClient, at: StartAt) -> Result<i64, SourceError> {
    let p = pc.partition();
    match at {
        StartAt::Beginning => pc.get_offset(OffsetAt::Earliest).await,
        StartAt::End => pc.get_offset(OffsetAt::Latest).await,
        StartAt::Offset(o) => return Ok(o),
    }
    .map_err(|e| classify(&format!("partition {p} offsets"), e))
}

/// Fetches from `offset`: the records and the high watermark.
pub async fn fetch(
    pc: &PartitionClient,
    offset: i64,
    max_bytes: i32,
    wait_ms: i32,
) -> Result<(Vec<rskafka::record::RecordAndOffset>, i64), SourceError> {
    pc.fetch_records(offset, 1..max_bytes, wait_ms)
        .await
        .map_err(|e| classify(&format!("partition {} at offset {offset}", pc.partition()), e))
}

pub fn is_retriable(e: &SourceError) -> bool {
    matches!(e, SourceError::Transient(_))
}
