//! Client of the brokers' admin API (`docs/admin-api.md`) and of the query nodes' probes.
//!
//! The operator asks any broker (through the bootstrap Service) for the cluster state, drains
//! brokers before removing them, and manages topic links. It reads only the fields it needs,
//! so brokers may add fields freely.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `GET /admin/v1/cluster`, the parts the operator uses.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ClusterState {
    pub cluster_id: String,
    pub controller: Option<ControllerState>,
    pub brokers: Vec<BrokerState>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ControllerState {
    pub node_id: i32,
    pub epoch: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BrokerState {
    pub node_id: i32,
    pub alive: bool,
    pub draining: bool,
    #[serde(default)]
    pub leaving: bool,
    pub ready: bool,
    pub assigned: usize,
    pub leading: usize,
}

impl BrokerState {
    /// Drained: holds and leads nothing (safe to stop).
    pub fn is_empty(&self) -> bool {
        self.assigned == 0 && self.leading == 0
    }
}

/// `PUT /admin/v1/links/{name}`: a topic link as the brokers store it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkSpec {
    pub source: LinkSource,
    pub topics: Vec<LinkSelector>,
    pub consumer_groups: Vec<LinkSelector>,
    /// `earliest` or `latest`.
    pub start_from: String,
    pub producer_forwarding: bool,
    pub paused: bool,
    pub promote: Vec<LinkPromotion>,
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkSource {
    pub bootstrap_servers: String,
    pub security_protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

// Never print the password (it would end up in logs).
impl std::fmt::Debug for LinkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSource")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkPromotion {
    pub topic: String,
    pub force: bool,
}

/// `GET /admin/v1/links/{name}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkState {
    pub name: String,
    pub topics: Vec<LinkTopicState>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LinkTopicState {
    pub topic: String,
    /// `mirroring`, `paused`, `promoting`, `promoted` or `failed`.
    pub state: String,
    pub partitions: i32,
    pub lag: i64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// HTTP client for one base URL (`http://host:port`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
}

/// What a request answered, when it was not a success.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// The brokers do not serve this API (older version): 404 or 405 on the path itself.
    Unsupported,
}

impl AdminClient {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        AdminClient { http, base: base.into().trim_end_matches('/').to_string() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn error(&self, path: &str, message: impl std::fmt::Display) -> Error {
        Error::Admin { url: format!("{}{path}", self.base), message: message.to_string() }
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> Result<reqwest::Response> {
        request.timeout(Duration::from_secs(5)).send().await.map_err(|e| self.error(path, e))
    }

    async fn fail(&self, path: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        self.error(path, format!("HTTP {status}: {}", body.trim()))
    }

    pub async fn cluster(&self) -> Result<ClusterState> {
        let path = "/admin/v1/cluster";
        let response = self.send(self.http.get(format!("{}{path}", self.base)), path).await?;
        if !response.status().is_success() {
            return Err(self.fail(path, response).await);
        }
        response.json().await.map_err(|e| self.error(path, e))
    }

    /// Starts (`true`) or cancels (`false`) the drain of broker `node_id`. An unknown broker
    /// is not an error when cancelling (nothing to cancel).
    pub async fn set_drain(&self, node_id: i32, drain: bool) -> Result<()> {
        let path = format!("/admin/v1/brokers/{node_id}/drain");
        let url = format!("{}{path}", self.base);
        let request = if drain { self.http.post(url) } else { self.http.delete(url) };
        let response = self.send(request, &path).await?;
        if response.status().is_success() || (!drain && response.status() == reqwest::StatusCode::NOT_FOUND) {
            return Ok(());
        }
        Err(self.fail(&path, response).await)
    }

    /// Creates or replaces link `name`.
    pub async fn put_link(&self, name: &str, link: &LinkSpec) -> Result<Result<(), Refusal>> {
        let path = format!("/admin/v1/links/{name}");
        let response = self.send(self.http.put(format!("{}{path}", self.base)).json(link), &path).await?;
        match response.status() {
            s if s.is_success() => Ok(Ok(())),
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED => Ok(Err(Refusal::Unsupported)),
            _ => Err(self.fail(&path, response).await),
        }
    }

    pub async fn link(&self, name: &str) -> Result<Result<LinkState, Refusal>> {
        let path = format!("/admin/v1/links/{name}");
        let response = self.send(self.http.get(format!("{}{path}", self.base)), &path).await?;
        match response.status() {
            s if s.is_success() => Ok(Ok(response.json().await.map_err(|e| self.error(&path, e))?)),
            reqwest::StatusCode::NOT_FOUND => Ok(Err(Refusal::NotFound)),
            _ => Err(self.fail(&path, response).await),
        }
    }

    /// Deletes link `name`; mirror topics not promoted yet become ordinary topics (`force`).
    /// Already gone is fine.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let path = format!("/admin/v1/links/{name}?force=true");
        let response = self.send(self.http.delete(format!("{}{path}", self.base)), &path).await?;
        if response.status().is_success() || response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.fail(&path, response).await)
    }

    /// `GET /readyz`: true on 200.
    pub async fn ready(&self) -> Result<bool> {
        let path = "/readyz";
        let response = self.send(self.http.get(format!("{}{path}", self.base)), path).await?;
        Ok(response.status().is_success())
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let path = "/metrics";
        let response = self.send(self.http.get(format!("{}{path}", self.base)), path).await?;
        if !response.status().is_success() {
            return Err(self.fail(path, response).await);
        }
        response.text().await.map_err(|e| self.error(path, e))
    }
}

/// Sums the samples of counter `name` (all label sets) in a Prometheus text scrape.
pub fn sum_samples(scrape: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counter_samples_over_labels() {
        let scrape = "# TYPE automq_broker_bytes_in counter\n\
            automq_broker_bytes_in_total{topic=\"a\"} 100\n\
            automq_broker_bytes_in_total{topic=\"b\"} 50.5\n\
            automq_broker_bytes_in_totalx 7\n\
            process_cpu_seconds_total 3.25\n# EOF\n";
        assert_eq!(sum_samples(scrape, "automq_broker_bytes_in_total"), Some(150.5));
        assert_eq!(sum_samples(scrape, "process_cpu_seconds_total"), Some(3.25));
        assert_eq!(sum_samples(scrape, "missing_total"), None);
    }

    #[test]
    fn link_source_debug_hides_the_password() {
        let source = LinkSource {
            bootstrap_servers: "k:9092".into(),
            security_protocol: "SASL_SSL".into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ca_pem: None,
        };
        assert!(!format!("{source:?}").contains("hunter2"));
    }
}
