//! The Kafka side of a routine load: a real Kafka client (rskafka) speaking the protocol to
//! any Kafka-compatible cluster.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
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

/// The client's TLS and SASL settings from the job's `property.security.protocol`,
/// `property.sasl.*` and `property.ssl.ca.location` (a PEM file on the query node) or
/// `property.ssl.ca.pem` (the PEM itself); without a CA, the system's trusted ones.
type Security = (Option<SaslConfig>, Option<Arc<rustls::ClientConfig>>);

fn security(spec: &LoadSpec) -> Result<Security, SourceError> {
    let prop = |k: &str| spec.client_properties.get(k).map(String::as_str);
    let protocol = prop("security.protocol").unwrap_or("PLAINTEXT").to_ascii_uppercase();
    let sasl = if protocol.starts_with("SASL_") {
        let user = prop("sasl.username").unwrap_or_default().to_string();
        let password = prop("sasl.password").unwrap_or_default().to_string();
        let credentials = Credentials::new(user, password);
        let mechanism = prop("sasl.mechanism").or(prop("sasl.mechanisms")).unwrap_or("PLAIN").to_ascii_uppercase();
        Some(match mechanism.as_str() {
            "PLAIN" => SaslConfig::Plain(credentials),
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(credentials),
            "SCRAM-SHA-512" => SaslConfig::ScramSha512(credentials),
            other => return Err(SourceError::Fatal(format!("sasl.mechanism {other} is not supported"))),
        })
    } else {
        None
    };
    let tls = if protocol.ends_with("SSL") {
        let pem = match (prop("ssl.ca.pem"), prop("ssl.ca.location")) {
            (Some(pem), _) => Some(pem.as_bytes().to_vec()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .map_err(|e| SourceError::Fatal(format!("cannot read ssl.ca.location {path}: {e}")))?,
            ),
            (None, None) => None,
        };
        let config = automq_common::tls::client_config(pem.as_deref()).map_err(SourceError::Fatal)?;
        Some(config)
    } else {
        None
    };
    Ok((sasl, tls))
}

/// Connects to the job's cluster. Retries inside the client stop after a few seconds so a
/// failure becomes visible to the job rather than an endless silent wait.
pub async fn connect(spec: &LoadSpec) -> Result<Client, SourceError> {
    let context = format!("cannot reach Kafka at {}", spec.brokers.join(","));
    let security = security(spec)?;
    // One attempt without retries first: a refused login or an untrusted certificate will not
    // get better, and retrying it against a broker that slows failed logins down would hold a
    // CREATE ROUTINE LOAD for tens of seconds before saying why.
    if let Err(e) = build(spec, &security, Duration::ZERO).await {
        let text = e.to_string();
        if ["Sasl", "SASL", "certificate", "TLS"].iter().any(|m| text.contains(m)) {
            return Err(SourceError::Fatal(format!("{context}: {}", short(&e))));
        }
    }
    build(spec, &security, Duration::from_secs(5)).await.map_err(|e| classify(&context, e))
}

/// A client whose internal retries stop after `deadline` of backing off.
async fn build(spec: &LoadSpec, security: &Security, deadline: Duration) -> Result<Client, KafkaError> {
    let mut builder = ClientBuilder::new(spec.brokers.clone());
    if let Some(sasl) = &security.0 {
        builder = builder.sasl_config(sasl.clone());
    }
    if let Some(tls) = &security.1 {
        builder = builder.tls_config(tls.clone());
    }
    builder
        .client_id(spec.client_id.clone())
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(deadline),
        })
        .build()
        .await
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
