//! ACLs enforced on every request, with Kafka's error codes.
//!
//! [`gate`] looks at a decoded request before its handler runs and either refuses it whole
//! (an error response in the API's own shape, e.g. GROUP_AUTHORIZATION_FAILED for a JoinGroup)
//! or lets it through, with the resources the principal may not touch taken out of it and a
//! [`Fix`] that puts them back into the response with their error (TOPIC_AUTHORIZATION_FAILED
//! per partition, ...) and fills in authorized-operations. Handlers never see a resource they
//! are not allowed to act on, and know nothing of ACLs.
//!
//! The operations each API needs are Kafka's (`KafkaApis`): Produce WRITE on the topic (and on
//! the transactional id), Fetch READ, ListOffsets / Metadata DESCRIBE, CreateTopics CREATE on the
//! cluster or the topic, DeleteTopics / DeleteRecords DELETE, CreatePartitions ALTER,
//! Describe/AlterConfigs DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic or the cluster, group
//! membership and offset commits READ on the group, OffsetFetch / DescribeGroups /
//! FindCoordinator DESCRIBE, DeleteGroups DELETE, InitProducerId WRITE on the transactional id
//! (IDEMPOTENT_WRITE on the cluster, or WRITE on some topic, for an idempotent producer), ACL and
//! SCRAM administration ALTER / DESCRIBE on the cluster.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::acl::{self, op, resource, AuthorizerConfig, Subject, CLUSTER_NAME};
use crate::broker::Broker;
use crate::cluster::records::ClusterView;

/// Puts refused resources back into a response.
pub type Fix = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// What the gate decided.
pub enum Gate {
    /// Run the handler on this (possibly reduced) request, then apply the fix to its response.
    Pass(RequestKind, Option<Fix>),
    /// Answer this instead.
    Refuse(ResponseKind),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::Pass(r, fix) => f.debug_tuple("Pass").field(r).field(&fix.is_some()).finish(),
            Gate::Refuse(r) => f.debug_tuple("Refuse").field(r).finish(),
        }
    }
}

/// One request's view of the authorizer: who asks, and the ACLs as of now.
#[derive(Debug)]
pub struct Authz {
    config: Arc<AuthorizerConfig>,
    view: Arc<ClusterView>,
    pub subject: Subject,
    /// Checks that refused (counted in `automq_broker_authorization_denials_total`).
    denials: AtomicU32,
}

impl Authz {
    pub fn new(broker: &Broker, principal: Option<&str>, host: Option<std::net::IpAddr>) -> Self {
        Authz {
            config: broker.authorizer.clone(),
            view: broker.cluster.view(),
            subject: Subject {
                principal: principal.map_or_else(|| acl::ANONYMOUS.to_string(), |p| format!("User:{p}")),
                host: host.map(|h| h.to_string()).unwrap_or_default(),
            },
            denials: AtomicU32::new(0),
        }
    }

    /// How many checks refused so far.
    pub fn denials(&self) -> u32 {
        self.denials.load(Ordering::Relaxed)
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn allows(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        let ok = self.check(resource_type, name, operation);
        if !ok {
            self.denials.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                principal = %self.subject.principal,
                host = %self.subject.host,
                resource_type,
                resource = name,
                operation,
                "denied"
            );
        }
        ok
    }

    /// The decision alone (not counted: authorized-operations asks about every operation).
    fn check(&self, resource_type: i8, name: &str, operation: i8) -> bool {
        acl::authorize(&self.config, &self.view.acls, &self.subject, resource_type, name, operation)
    }

    fn topic(&self, name: &str, operation: i8) -> bool {
        self.allows(resource::TOPIC, name, operation)
    }

    fn cluster(&self, operation: i8) -> bool {
        self.allows(resource::CLUSTER, CLUSTER_NAME, operation)
    }

    fn group(&self, name: &str, operation: i8) -> bool {
        self.allows(resource::GROUP, name, operation)
    }

    fn txn(&self, name: &str, operation: i8) -> bool {
        self.allows(resource::TRANSACTIONAL_ID, name, operation)
    }

    /// The authorized-operations bits of a resource.
    pub fn operations(&self, resource_type: i8, name: &str) -> i32 {
        acl::bits(acl::operations_of(resource_type).iter().copied().filter(|&o| self.check(resource_type, name, o)))
    }

    /// CREATE on the cluster, or on the topic.
    fn may_create(&self, topic: &str) -> bool {
        self.cluster(op::CREATE) || self.topic(topic, op::CREATE)
    }
}

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();

fn text(s: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.to_string()))
}

/// Splits `items` into those `keep` allows and those it does not.
fn split<T>(items: Vec<T>, mut keep: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| keep(t))
}

fn fix(f: impl FnOnce(&mut ResponseKind) + Send + 'static) -> Option<Fix> {
    Some(Box::new(f))
}

/// Decides on one request. `broker` resolves topic ids (Fetch v13+, Metadata by id).
pub fn gate(a: &Authz, broker: &Broker, body: RequestKind, version: i16) -> Gate {
    if !a.enabled() {
        return Gate::Pass(body, None);
    }
    use kafka_protocol::messages as m;
    match body {
        RequestKind::Produce(mut r) => {
            let txn_ok = r.transactional_id.as_ref().is_none_or(|t| a.txn(t, op::WRITE));
            let (ok, denied) = split(std::mem::take(&mut r.topic_data), |t| txn_ok && a.topic(&t.name, op::WRITE));
            // Produce would create a missing topic: only for those who may create it (else
            // UNKNOWN_TOPIC_OR_PARTITION, what Kafka answers a produce to a missing topic).
            let (ok, missing) = split(ok, |t| {
                broker.topic(&t.name).is_some() || !broker.config.auto_create_topics || a.may_create(&t.name)
            });
            r.topic_data = ok;
            if denied.is_empty() && missing.is_empty() {
                return Gate::Pass(RequestKind::Produce(r), None);
            }
            let code = if txn_ok { TOPIC_DENIED } else { TXN_DENIED };
            let unknown = ResponseError::UnknownTopicOrPartition.code();
            let refused: Vec<_> =
                denied.into_iter().map(|t| (t, code)).chain(missing.into_iter().map(|t| (t, unknown))).collect();
            Gate::Pass(
                RequestKind::Produce(r),
                fix(move |resp| {
                    let ResponseKind::Produce(resp) = resp else { return };
                    for (t, code) in refused {
                        let parts = t
                            .partition_data
                            .iter()
                            .map(|p| {
                                m::produce_response::PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                            })
                            .collect();
                        resp.responses.push(
                            m::produce_response::TopicProduceResponse::default()
                                .with_name(t.name)
                                .with_topic_id(t.topic_id)
                                .with_partition_responses(parts),
                        );
                    }
                }),
            )
        }
        RequestKind::Fetch(mut r) => {
            let name = |t: &m::fetch_request::FetchTopic| -> Option<String> {
                if version >= 13 {
                    broker.topic_by_id(t.topic_id).map(|t| t.meta.name.clone())
                } else {
                    Some(t.topic.to_string())
                }
            };
            // An unknown topic id is left to the handler (UNKNOWN_TOPIC_ID).
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| name(t).is_none_or(|n| a.topic(&n, op::READ)));
            r.topics = ok;
            if denied.is_empty() {
                return Gate::Pass(RequestKind::Fetch(r), None);
            }
            Gate::Pass(
                RequestKind::Fetch(r),
                fix(move |resp| {
                    let ResponseKind::Fetch(resp) = resp else { return };
                    for t in denied {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                m::fetch_response::PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_high_watermark(-1)
                                    .with_last_stable_offset(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect();
                        resp.responses.push(
                            m::fetch_response::FetchableTopicResponse::default()
                                .with_topic(t.topic)
                                .with_topic_id(t.topic_id)
                                .with_partitions(parts),
                        );
                    }
                }),
            )
        }
        RequestKind::ListOffsets(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| a.topic(&t.name, op::DESCRIBE));
            r.topics = ok;
            Gate::Pass(
                RequestKind::ListOffsets(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::ListOffsets(resp) = resp else { return };
                        for t in denied {
                            let parts = t
                                .partitions
                                .iter()
                                .map(|p| {
                                    m::list_offsets_response::ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_DENIED)
                                        .with_offset(-1)
                                        .with_timestamp(-1)
                                })
                                .collect();
                            resp.topics.push(
                                m::list_offsets_response::ListOffsetsTopicResponse::default()
                                    .with_name(t.name)
                                    .with_partitions(parts),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::Metadata(r) => metadata(a, broker, r, version),
        RequestKind::CreateTopics(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| a.may_create(&t.name));
            r.topics = ok;
            let names: Vec<TopicName> = denied.into_iter().map(|t| t.name).collect();
            Gate::Pass(
                RequestKind::CreateTopics(r),
                (!names.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::CreateTopics(resp) = resp else { return };
                        for n in names {
                            resp.topics.push(
                                m::create_topics_response::CreatableTopicResult::default()
                                    .with_name(n)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_error_message(text("not authorized to create this topic"))
                                    .with_num_partitions(-1)
                                    .with_replication_factor(-1),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::DeleteTopics(mut r) => {
            let name_of = |s: &m::delete_topics_request::DeleteTopicState| -> Option<String> {
                match &s.name {
                    Some(n) => Some(n.to_string()),
                    None => broker.topic_by_id(s.topic_id).map(|t| t.meta.name.clone()),
                }
            };
            let (ok, denied) =
                split(std::mem::take(&mut r.topics), |s| name_of(s).is_none_or(|n| a.topic(&n, op::DELETE)));
            r.topics = ok;
            let (ok_names, denied_names) = split(std::mem::take(&mut r.topic_names), |n| a.topic(n, op::DELETE));
            r.topic_names = ok_names;
            if denied.is_empty() && denied_names.is_empty() {
                return Gate::Pass(RequestKind::DeleteTopics(r), None);
            }
            Gate::Pass(
                RequestKind::DeleteTopics(r),
                fix(move |resp| {
                    let ResponseKind::DeleteTopics(resp) = resp else { return };
                    let refused = denied.into_iter().map(|s| (s.name, s.topic_id));
                    for (name, id) in refused.chain(denied_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil()))) {
                        resp.responses.push(
                            m::delete_topics_response::DeletableTopicResult::default()
                                .with_name(name)
                                .with_topic_id(id)
                                .with_error_code(TOPIC_DENIED),
                        );
                    }
                }),
            )
        }
        RequestKind::CreatePartitions(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| a.topic(&t.name, op::ALTER));
            r.topics = ok;
            Gate::Pass(
                RequestKind::CreatePartitions(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::CreatePartitions(resp) = resp else { return };
                        for t in denied {
                            resp.results.push(
                                m::create_partitions_response::CreatePartitionsTopicResult::default()
                                    .with_name(t.name)
                                    .with_error_code(TOPIC_DENIED),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::DeleteRecords(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.topics), |t| a.topic(&t.name, op::DELETE));
            r.topics = ok;
            Gate::Pass(
                RequestKind::DeleteRecords(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::DeleteRecords(resp) = resp else { return };
                        for t in denied {
                            let parts = t
                                .partitions
                                .iter()
                                .map(|p| {
                                    m::delete_records_response::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_low_watermark(-1)
                                        .with_error_code(TOPIC_DENIED)
                                })
                                .collect();
                            resp.topics.push(
                                m::delete_records_response::DeleteRecordsTopicResult::default()
                                    .with_name(t.name)
                                    .with_partitions(parts),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| {
                config_allowed(a, c.resource_type, &c.resource_name, op::DESCRIBE_CONFIGS)
            });
            r.resources = ok;
            Gate::Pass(
                RequestKind::DescribeConfigs(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::DescribeConfigs(resp) = resp else { return };
                        for c in denied {
                            resp.results.push(
                                m::describe_configs_response::DescribeConfigsResult::default()
                                    .with_error_code(config_denied_code(c.resource_type))
                                    .with_resource_type(c.resource_type)
                                    .with_resource_name(c.resource_name),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::AlterConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| {
                config_allowed(a, c.resource_type, &c.resource_name, op::ALTER_CONFIGS)
            });
            r.resources = ok;
            Gate::Pass(
                RequestKind::AlterConfigs(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::AlterConfigs(resp) = resp else { return };
                        for c in denied {
                            resp.responses.push(
                                m::alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_error_code(config_denied_code(c.resource_type))
                                    .with_resource_type(c.resource_type)
                                    .with_resource_name(c.resource_name),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.resources), |c| {
                config_allowed(a, c.resource_type, &c.resource_name, op::ALTER_CONFIGS)
            });
            r.resources = ok;
            Gate::Pass(
                RequestKind::IncrementalAlterConfigs(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::IncrementalAlterConfigs(resp) = resp else { return };
                        for c in denied {
                            resp.responses.push(
                                m::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_error_code(config_denied_code(c.resource_type))
                                    .with_resource_type(c.resource_type)
                                    .with_resource_name(c.resource_name),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::DescribeCluster(r) => {
            if !a.cluster(op::DESCRIBE) {
                return Gate::Refuse(ResponseKind::DescribeCluster(
                    m::DescribeClusterResponse::default()
                        .with_error_code(CLUSTER_DENIED)
                        .with_cluster_authorized_operations(i32::MIN),
                ));
            }
            let ops = r.include_cluster_authorized_operations.then(|| a.operations(resource::CLUSTER, CLUSTER_NAME));
            Gate::Pass(
                RequestKind::DescribeCluster(r),
                fix(move |resp| {
                    if let (ResponseKind::DescribeCluster(resp), Some(ops)) = (resp, ops) {
                        resp.cluster_authorized_operations = ops;
                    }
                }),
            )
        }
        RequestKind::InitProducerId(r) => {
            let ok = match &r.transactional_id {
                Some(t) => a.txn(t, op::WRITE),
                None => {
                    a.cluster(op::IDEMPOTENT_WRITE) || broker.topics().iter().any(|t| a.topic(&t.meta.name, op::WRITE))
                }
            };
            if ok {
                return Gate::Pass(RequestKind::InitProducerId(r), None);
            }
            let code = if r.transactional_id.is_some() { TXN_DENIED } else { CLUSTER_DENIED };
            Gate::Refuse(ResponseKind::InitProducerId(
                m::InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(m::ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let txn_ok = a.txn(&r.v3_and_below_transactional_id, op::WRITE);
            let denied: HashSet<String> = r
                .v3_and_below_topics
                .iter()
                .filter(|t| !a.topic(&t.name, op::WRITE))
                .map(|t| t.name.to_string())
                .collect();
            if txn_ok && denied.is_empty() {
                return Gate::Pass(RequestKind::AddPartitionsToTxn(r), None);
            }
            // Kafka refuses the whole request: refused topics get their error, the others
            // OPERATION_NOT_ATTEMPTED.
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let code = if !txn_ok {
                        TXN_DENIED
                    } else if denied.contains(t.name.as_str()) {
                        TOPIC_DENIED
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    };
                    m::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    m::add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gate::Refuse(ResponseKind::AddPartitionsToTxn(
                m::AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !a.txn(&r.transactional_id, op::WRITE) {
                TXN_DENIED
            } else if !a.group(&r.group_id, op::READ) {
                GROUP_DENIED
            } else {
                return Gate::Pass(RequestKind::AddOffsetsToTxn(r), None);
            };
            Gate::Refuse(ResponseKind::AddOffsetsToTxn(m::AddOffsetsToTxnResponse::default().with_error_code(code)))
        }
        RequestKind::EndTxn(r) => {
            if a.txn(&r.transactional_id, op::WRITE) {
                return Gate::Pass(RequestKind::EndTxn(r), None);
            }
            Gate::Refuse(ResponseKind::EndTxn(m::EndTxnResponse::default().with_error_code(TXN_DENIED)))
        }
        RequestKind::DescribeTransactions(mut r) => {
            let (ok, denied) = split(std::mem::take(&mut r.transactional_ids), |t| a.txn(t, op::DESCRIBE));
            r.transactional_ids = ok;
            Gate::Pass(
                RequestKind::DescribeTransactions(r),
                (!denied.is_empty()).then(|| -> Fix {
                    Box::new(move |resp| {
                        let ResponseKind::DescribeTransactions(resp) = resp else { return };
                        for t in denied {
                            resp.transaction_states.push(
                                m::describe_transactions_response::TransactionState::default()
                                    .with_error_code(TXN_DENIED)
                                    .with_transactional_id(t),
                            );
                        }
                    })
                }),
            )
        }
        RequestKind::ListTransactions(r) => {
            let auth = a.detached();
            Gate::Pass(
                RequestKind::ListTransactions(r),
                fix(move |resp| {
                    if let ResponseKind::ListTransactions(resp) = resp {
                        resp.transaction_states.retain(|t| auth.txn(&t.transactional_id, op::DESCRIBE));
                    }
                }),
            )
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            if a.cluster(op::DESCRIBE) {
                return Gate::Pass(RequestKind::DescribeUserScramCredentials(r), None);
            }
            // As Kafka: the error at the top and on every user asked about.
            let message = text("not authorized to describe users");
            let results = r
                .users
                .iter()
                .flatten()
                .map(|u| {
                    m::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default()
                        .with_user(u.name.clone())
                        .with_error_code(CLUSTER_DENIED)
                        .with_error_message(message.clone())
                })
                .collect();
            Gate::Refuse(ResponseKind::DescribeUserScramCredentials(
                m::DescribeUserScramCredentialsResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .with_error_message(message)
                    .with_results(results),
            ))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            if a.cluster(op::ALTER) {
                return Gate::Pass(RequestKind::AlterUserScramCredentials(r), None);
            }
            let users: Vec<StrBytes> = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let results = users
                .into_iter()
                .map(|u| {
                    m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                        .with_user(u)
                        .with_error_code(CLUSTER_DENIED)
                })
                .collect();
            Gate::Refuse(ResponseKind::AlterUserScramCredentials(
                m::AlterUserScramCredentialsResponse::default().with_results(results),
            ))
        }
        RequestKind::CreateAcls(r) => {
            if a.cluster(op::ALTER) {
                return Gate::Pass(RequestKind::CreateAcls(r), None);
            }
            let results = r
                .creations
                .iter()
                .map(|_| m::create_acls_response::AclCreationResult::default().with_error_code(CLUSTER_DENIED))
                .collect();
            Gate::Refuse(ResponseKind::CreateAcls(m::CreateAclsResponse::default().with_results(results)))
        }
        RequestKind::DeleteAcls(r) => {
            if a.cluster(op::ALTER) {
                return Gate::Pass(RequestKind::DeleteAcls(r), None);
            }
            let results = r
                .filters
                .iter()
                .map(|_| m::delete_acls_response::DeleteAclsFilterResult::default().with_error_code(CLUSTER_DENIED))
                .collect();
            Gate::Refuse(ResponseKind::DeleteAcls(m::DeleteAclsResponse::default().with_filter_results(results)))
        }
        RequestKind::DescribeAcls(r) => {
            if a.cluster(op::DESCRIBE) {
                return Gate::Pass(RequestKind::DescribeAcls(r), None);
            }
            Gate::Refuse(ResponseKind::DescribeAcls(m::DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED)))
        }
        other => crate::security::authz_groups::gate(a, other, version),
    }
}

impl Authz {
    /// A copy that can move into a response fix.
    pub(crate) fn detached(&self) -> Authz {
        Authz {
            config: self.config.clone(),
            view: self.view.clone(),
            subject: self.subject.clone(),
            denials: AtomicU32::new(0),
        }
    }
}

/// Config resources: topics (2) by name, brokers (4) and broker loggers (8) through the cluster.
fn config_allowed(a: &Authz, resource_type: i8, name: &str, operation: i8) -> bool {
    match resource_type {
        2 => a.topic(name, operation),
        _ => a.cluster(operation),
    }
}

fn config_denied_code(resource_type: i8) -> i16 {
    if resource_type == 2 {
        TOPIC_DENIED
    } else {
        CLUSTER_DENIED
    }
}

/// Metadata: topics without DESCRIBE are TOPIC_AUTHORIZATION_FAILED when named and left out
/// when listing all; an unknown topic is auto-created only with CREATE (else
/// TOPIC_AUTHORIZATION_FAILED); authorized operations are the principal's.
fn metadata(a: &Authz, broker: &Broker, mut r: kafka_protocol::messages::MetadataRequest, version: i16) -> Gate {
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    let all = r.topics.is_none() || (version == 0 && r.topics.as_ref().is_some_and(|t| t.is_empty()));
    let allow_create = (version < 4 || r.allow_auto_topic_creation) && broker.config.auto_create_topics;
    let mut denied = Vec::new();
    if let Some(list) = r.topics.as_mut().filter(|_| !all) {
        let (ok, refused) = split(std::mem::take(list), |t| {
            let name = match &t.name {
                Some(n) => n.to_string(),
                None => match broker.topic_by_id(t.topic_id) {
                    Some(topic) => topic.meta.name.clone(),
                    None => return true, // unknown id: UNKNOWN_TOPIC_ID from the handler
                },
            };
            let exists = broker.topic(&name).is_some();
            a.topic(&name, op::DESCRIBE) && (exists || !allow_create || a.may_create(&name))
        });
        *list = ok;
        denied = refused;
        if list.is_empty() && version == 0 {
            // v0 reads an empty list as "all topics".
            r.topics = None;
        }
    }
    let topic_ops = r.include_topic_authorized_operations;
    let cluster_ops = r.include_cluster_authorized_operations;
    let emptied_v0 = version == 0 && r.topics.is_none() && !all;
    let auth = a.detached();
    Gate::Pass(
        kafka_protocol::messages::RequestKind::Metadata(r),
        fix(move |resp| {
            let ResponseKind::Metadata(resp) = resp else { return };
            if all {
                resp.topics.retain(|t| t.name.as_ref().is_some_and(|n| auth.allows(resource::TOPIC, n, op::DESCRIBE)));
            }
            if emptied_v0 {
                resp.topics.clear();
            }
            if topic_ops {
                for t in &mut resp.topics {
                    if let Some(n) = &t.name {
                        t.topic_authorized_operations = auth.operations(resource::TOPIC, n);
                    }
                }
            }
            for t in denied {
                resp.topics.push(
                    MetadataResponseTopic::default()
                        .with_error_code(TOPIC_DENIED)
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_topic_authorized_operations(if topic_ops { 0 } else { i32::MIN }),
                );
            }
            if cluster_ops {
                resp.cluster_authorized_operations = auth.operations(resource::CLUSTER, CLUSTER_NAME);
            }
        }),
    )
}

/// Every API [`gate`] decides on (the others need no authorization: ApiVersions and the SASL
/// exchange). A test checks that every API the broker supports is one or the other, so an API
/// added later cannot slip past the authorizer unnoticed.
pub const GATED: &[kafka_protocol::messages::ApiKey] = {
    use kafka_protocol::messages::ApiKey::*;
    &[
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        CreateTopics,
        DeleteTopics,
        CreatePartitions,
        DeleteRecords,
        DescribeConfigs,
        AlterConfigs,
        IncrementalAlterConfigs,
        DescribeCluster,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        DescribeTransactions,
        ListTransactions,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        CreateAcls,
        DeleteAcls,
        DescribeAcls,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        TxnOffsetCommit,
        OffsetFetch,
        DescribeGroups,
        ListGroups,
        DeleteGroups,
    ]
};

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn every_supported_api_is_authorized_or_needs_no_authorization() {
        let open = [ApiKey::ApiVersions, ApiKey::SaslHandshake, ApiKey::SaslAuthenticate];
        for (api, _, _) in crate::handlers::supported_apis() {
            assert!(
                super::GATED.contains(&api) || open.contains(&api),
                "{api:?} is supported but the ACL gate does not decide on it"
            );
        }
    }

    #[test]
    fn split_keeps_order() {
        let (a, b) = super::split(vec![1, 2, 3, 4], |x| x % 2 == 0);
        assert_eq!((a, b), (vec![2, 4], vec![1, 3]));
    }
}
