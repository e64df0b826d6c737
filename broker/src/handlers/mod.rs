//! One file per Kafka API. `dispatch` routes a decoded request to its handler, counts it, and
//! returns the reply (or a pending reply, for produce).

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::metrics::ApiLabels;
use crate::server::Request;

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

/// What a handler returns: a response now, a response later (the connection may go on with
/// its next request meanwhile), or none (acks=0).
#[allow(clippy::large_enum_variant)] // one reply per request, moved once
pub enum Reply {
    Now(Option<ResponseKind>),
    Later(BoxFuture<'static, Option<ResponseKind>>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(r) => f.debug_tuple("Now").field(r).finish(),
            Reply::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// The versions this broker implements, per API (within what the codec supports).
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    let ours = match api_key {
        ApiKey::Produce => (3, 11),
        ApiKey::Fetch => (4, 16),
        ApiKey::ListOffsets => (1, 8),
        ApiKey::Metadata => (0, 12),
        ApiKey::ApiVersions => (0, 3),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::DeleteRecords => (0, 2),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DescribeCluster => (0, 1),
        ApiKey::InitProducerId => (0, 4),
        // Transactions without KIP-890's server-side verification (AddPartitionsToTxn v4+,
        // EndTxn v5+).
        ApiKey::AddPartitionsToTxn => (0, 3),
        ApiKey::AddOffsetsToTxn => (0, 3),
        ApiKey::EndTxn => (0, 3),
        ApiKey::DescribeTransactions => (0, 0),
        // SASL with KIP-43 framing (SaslAuthenticate). v0 is listed because librdkafka checks
        // for it, but a client that then sends raw (unframed) tokens is disconnected.
        ApiKey::SaslHandshake => (0, 1),
        ApiKey::SaslAuthenticate => (0, 2),
        ApiKey::DescribeUserScramCredentials => (0, 0),
        ApiKey::AlterUserScramCredentials => (0, 0),
        ApiKey::ListTransactions => (0, 1),
        ApiKey::CreateAcls => (1, 3),
        ApiKey::DescribeAcls => (1, 3),
        ApiKey::DeleteAcls => (1, 3),
        _ => return crate::groups::handlers::supported_versions(api_key),
    };
    let codec = api_key.valid_versions();
    let (min, max) = (ours.0.max(codec.min), ours.1.min(codec.max));
    (min <= max).then_some((min, max))
}

/// Every API this broker answers, for ApiVersions.
pub fn supported_apis() -> Vec<(ApiKey, i16, i16)> {
    ApiKey::iter().filter_map(|k| supported_versions(k).map(|(min, max)| (k, min, max))).collect()
}

pub(crate) fn api_name(api_key: ApiKey) -> String {
    format!("{api_key:?}")
}

/// An error message for a response field.
pub(crate) fn message(e: &crate::error::Error) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}

/// Routes one request.
#[tracing::instrument(skip_all, fields(api = ?request.api_key, version = request.header.request_api_version, correlation_id = request.header.correlation_id))]
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Reply {
    let started = Instant::now();
    let api = api_name(request.api_key);
    broker.metrics.requests.get_or_create(&ApiLabels { api: api.clone() }).inc();
    let version = request.header.request_api_version;
    let listener = request.listener.clone();
    let client = crate::groups::ClientInfo {
        client_id: request.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: request.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        listener: listener.as_ref().map(|l| l.name.clone()),
    };
    let b = broker.clone();
    let authz = crate::security::authz::Authz::new(broker, request.principal.as_deref(), request.peer.map(|p| p.ip()));
    let gate = crate::security::authz::gate(&authz, broker, request.body, version);
    let denials = authz.denials();
    if denials > 0 {
        broker.metrics.authorization_denied(&api, denials);
    }
    let (body, fix) = match gate {
        crate::security::authz::Gate::Pass(body, fix) => (body, fix),
        crate::security::authz::Gate::Refuse(response) => return Reply::Now(Some(response)),
    };
    let reply = match body {
        RequestKind::ApiVersions(r) => Reply::Now(Some(ResponseKind::ApiVersions(api_versions::handle(&r, version)))),
        RequestKind::Metadata(r) => {
            Reply::Now(Some(ResponseKind::Metadata(metadata::handle(&b, r, version, &client).await)))
        }
        RequestKind::Produce(r) => produce::handle(b, r, version, &client.client_id).await,
        RequestKind::Fetch(r) => {
            Reply::Now(Some(ResponseKind::Fetch(fetch::handle(&b, r, version, &client.client_id).await)))
        }
        RequestKind::ListOffsets(r) => {
            Reply::Now(Some(ResponseKind::ListOffsets(list_offsets::handle(&b, r, version, &client.client_id).await)))
        }
        RequestKind::CreateTopics(r) => {
            Reply::Now(Some(ResponseKind::CreateTopics(create_topics::handle(&b, r, version).await)))
        }
        RequestKind::DeleteTopics(r) => {
            Reply::Now(Some(ResponseKind::DeleteTopics(delete_topics::handle(&b, r, version).await)))
        }
        RequestKind::CreatePartitions(r) => {
            Reply::Now(Some(ResponseKind::CreatePartitions(create_partitions::handle(&b, r).await)))
        }
        RequestKind::DeleteRecords(r) => {
            Reply::Now(Some(ResponseKind::DeleteRecords(delete_records::handle(&b, r).await)))
        }
        RequestKind::DescribeConfigs(r) => {
            Reply::Now(Some(ResponseKind::DescribeConfigs(describe_configs::handle(&b, r, version))))
        }
        RequestKind::AlterConfigs(r) => {
            Reply::Now(Some(ResponseKind::AlterConfigs(alter_configs::handle(&b, r).await)))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            Reply::Now(Some(ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(&b, r).await)))
        }
        RequestKind::DescribeCluster(r) => {
            Reply::Now(Some(ResponseKind::DescribeCluster(describe_cluster::handle(&b, r, client.listener.as_deref()))))
        }
        RequestKind::InitProducerId(r) => {
            Reply::Now(Some(ResponseKind::InitProducerId(init_producer_id::handle(&b, r, version).await)))
        }
        RequestKind::AddPartitionsToTxn(r) => Reply::Now(Some(ResponseKind::AddPartitionsToTxn(
            crate::txn::handlers::add_partitions(&b, r, version).await,
        ))),
        RequestKind::AddOffsetsToTxn(r) => {
            Reply::Now(Some(ResponseKind::AddOffsetsToTxn(crate::txn::handlers::add_offsets(&b, r, version).await)))
        }
        RequestKind::EndTxn(r) => {
            Reply::Now(Some(ResponseKind::EndTxn(crate::txn::handlers::end_txn(&b, r, version).await)))
        }
        RequestKind::DescribeTransactions(r) => {
            Reply::Now(Some(ResponseKind::DescribeTransactions(crate::txn::handlers::describe(&b, r))))
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            Reply::Now(Some(ResponseKind::DescribeUserScramCredentials(crate::security::credentials::describe(&b, r))))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            Reply::Now(Some(ResponseKind::AlterUserScramCredentials(crate::security::credentials::alter(&b, r).await)))
        }
        // The connection answers these itself while authenticating (server.rs); here they come
        // on a listener without SASL, or after authentication.
        RequestKind::SaslHandshake(_) => {
            let sasl = listener.as_ref().map(|l| l.sasl.as_slice()).unwrap_or_default();
            let names = sasl.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
            let code =
                if sasl.is_empty() { ResponseError::UnsupportedSaslMechanism } else { ResponseError::IllegalSaslState };
            Reply::Now(Some(ResponseKind::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default()
                    .with_error_code(code.code())
                    .with_mechanisms(names),
            )))
        }
        RequestKind::SaslAuthenticate(_) => Reply::Now(Some(ResponseKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str("no SASL exchange in progress"))),
        ))),
        RequestKind::ListTransactions(r) => {
            Reply::Now(Some(ResponseKind::ListTransactions(crate::txn::handlers::list(&b, r))))
        }
        RequestKind::CreateAcls(r) => {
            Reply::Now(Some(ResponseKind::CreateAcls(crate::security::acl::create(&b, r).await)))
        }
        RequestKind::DescribeAcls(r) => {
            Reply::Now(Some(ResponseKind::DescribeAcls(crate::security::acl::describe(&b, r))))
        }
        RequestKind::DeleteAcls(r) => {
            Reply::Now(Some(ResponseKind::DeleteAcls(crate::security::acl::delete(&b, r).await)))
        }
        other => match crate::groups::handlers::dispatch(&b, other, version, &client).await {
            Some(response) => Reply::Now(Some(response)),
            None => {
                // Unreachable: decode_request refuses APIs we do not support.
                tracing::error!(api, "no handler for a supported API");
                Reply::Now(None)
            }
        },
    };
    let latency = broker.metrics.latency.get_or_create(&ApiLabels { api }).clone();
    match reply {
        Reply::Now(mut r) => {
            if let (Some(fix), Some(r)) = (fix, r.as_mut()) {
                fix(r);
            }
            latency.observe(started.elapsed().as_secs_f64());
            Reply::Now(r)
        }
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let mut r = fut.await;
            if let (Some(fix), Some(r)) = (fix, r.as_mut()) {
                fix(r);
            }
            latency.observe(started.elapsed().as_secs_f64());
            r
        })),
    }
}

/// The error code for a response field (0 for success).
pub(crate) fn code(result: &Result<(), crate::error::Error>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(e) => e.code().code(),
    }
}

pub(crate) fn err(code: ResponseError, msg: impl Into<String>) -> crate::error::Error {
    crate::error::Error::kafka(code, msg)
}
