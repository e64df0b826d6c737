//! The gate (see [`super::authz`]) for the group APIs: membership and offset commits need READ
//! on the group, OffsetFetch / DescribeGroups / FindCoordinator DESCRIBE, DeleteGroups DELETE;
//! offsets of a topic need READ (commit) or DESCRIBE (fetch) on it; ListGroups shows only the
//! groups the principal may describe (all of them with DESCRIBE on the cluster).

use kafka_protocol::messages::{self as m, RequestKind, ResponseKind};
use kafka_protocol::ResponseError;

use super::acl::{op, resource, CLUSTER_NAME};
use super::authz::{Authz, Fix, Gate};

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();

fn fix(f: impl FnOnce(&mut ResponseKind) + Send + 'static) -> Option<Fix> {
    Some(Box::new(f))
}

pub fn gate(a: &Authz, body: RequestKind, version: i16) -> Gate {
    let group = |g: &str, o: i8| a.allows(resource::GROUP, g, o);
    let topic = |t: &str, o: i8| a.allows(resource::TOPIC, t, o);
    match body {
        RequestKind::FindCoordinator(mut r) => {
            let kind = if r.key_type == 1 { resource::TRANSACTIONAL_ID } else { resource::GROUP };
            let code = if r.key_type == 1 { TXN_DENIED } else { GROUP_DENIED };
            if version < 4 {
                if a.allows(kind, &r.key, op::DESCRIBE) {
                    return Gate::Pass(RequestKind::FindCoordinator(r), None);
                }
                return Gate::Refuse(ResponseKind::FindCoordinator(
                    m::FindCoordinatorResponse::default()
                        .with_error_code(code)
                        .with_node_id(m::BrokerId(-1))
                        .with_port(-1),
                ));
            }
            let (ok, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.coordinator_keys).into_iter().partition(|k| a.allows(kind, k, op::DESCRIBE));
            r.coordinator_keys = ok;
            if denied.is_empty() {
                return Gate::Pass(RequestKind::FindCoordinator(r), None);
            }
            Gate::Pass(
                RequestKind::FindCoordinator(r),
                fix(move |resp| {
                    let ResponseKind::FindCoordinator(resp) = resp else { return };
                    for key in denied {
                        resp.coordinators.push(
                            m::find_coordinator_response::Coordinator::default()
                                .with_key(key)
                                .with_node_id(m::BrokerId(-1))
                                .with_port(-1)
                                .with_error_code(code),
                        );
                    }
                }),
            )
        }
        RequestKind::JoinGroup(r) => {
            if group(&r.group_id, op::READ) {
                return Gate::Pass(RequestKind::JoinGroup(r), None);
            }
            Gate::Refuse(ResponseKind::JoinGroup(
                m::JoinGroupResponse::default().with_error_code(GROUP_DENIED).with_generation_id(-1),
            ))
        }
        RequestKind::SyncGroup(r) => {
            if group(&r.group_id, op::READ) {
                return Gate::Pass(RequestKind::SyncGroup(r), None);
            }
            Gate::Refuse(ResponseKind::SyncGroup(m::SyncGroupResponse::default().with_error_code(GROUP_DENIED)))
        }
        RequestKind::Heartbeat(r) => {
            if group(&r.group_id, op::READ) {
                return Gate::Pass(RequestKind::Heartbeat(r), None);
            }
            Gate::Refuse(ResponseKind::Heartbeat(m::HeartbeatResponse::default().with_error_code(GROUP_DENIED)))
        }
        RequestKind::LeaveGroup(r) => {
            if group(&r.group_id, op::READ) {
                return Gate::Pass(RequestKind::LeaveGroup(r), None);
            }
            Gate::Refuse(ResponseKind::LeaveGroup(m::LeaveGroupResponse::default().with_error_code(GROUP_DENIED)))
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_ok = group(&r.group_id, op::READ);
            let (ok, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.topics).into_iter().partition(|t| group_ok && topic(&t.name, op::READ));
            r.topics = ok;
            if denied.is_empty() {
                return Gate::Pass(RequestKind::OffsetCommit(r), None);
            }
            let code = if group_ok { TOPIC_DENIED } else { GROUP_DENIED };
            Gate::Pass(
                RequestKind::OffsetCommit(r),
                fix(move |resp| {
                    let ResponseKind::OffsetCommit(resp) = resp else { return };
                    for t in denied {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                m::offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect();
                        resp.topics.push(
                            m::offset_commit_response::OffsetCommitResponseTopic::default()
                                .with_name(t.name)
                                .with_topic_id(t.topic_id)
                                .with_partitions(parts),
                        );
                    }
                }),
            )
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let code = if !a.allows(resource::TRANSACTIONAL_ID, &r.transactional_id, op::WRITE) {
                Some(TXN_DENIED)
            } else if !group(&r.group_id, op::READ) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            let (ok, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.topics).into_iter().partition(|t| code.is_none() && topic(&t.name, op::READ));
            r.topics = ok;
            if denied.is_empty() {
                return Gate::Pass(RequestKind::TxnOffsetCommit(r), None);
            }
            let code = code.unwrap_or(TOPIC_DENIED);
            Gate::Pass(
                RequestKind::TxnOffsetCommit(r),
                fix(move |resp| {
                    let ResponseKind::TxnOffsetCommit(resp) = resp else { return };
                    for t in denied {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| {
                                m::txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect();
                        resp.topics.push(
                            m::txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                                .with_name(t.name)
                                .with_partitions(parts),
                        );
                    }
                }),
            )
        }
        RequestKind::OffsetFetch(r) => offset_fetch(a, r, version),
        RequestKind::DescribeGroups(mut r) => {
            let (ok, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.groups).into_iter().partition(|g| group(g, op::DESCRIBE));
            r.groups = ok;
            let with_ops = r.include_authorized_operations;
            let auth = a.detached();
            Gate::Pass(
                RequestKind::DescribeGroups(r),
                fix(move |resp| {
                    let ResponseKind::DescribeGroups(resp) = resp else { return };
                    if with_ops {
                        for g in &mut resp.groups {
                            g.authorized_operations = auth.operations(resource::GROUP, &g.group_id);
                        }
                    }
                    for g in denied {
                        resp.groups.push(
                            m::describe_groups_response::DescribedGroup::default()
                                .with_group_id(g)
                                .with_error_code(GROUP_DENIED)
                                .with_authorized_operations(i32::MIN),
                        );
                    }
                }),
            )
        }
        RequestKind::ListGroups(r) => {
            if a.allows(resource::CLUSTER, CLUSTER_NAME, op::DESCRIBE) {
                return Gate::Pass(RequestKind::ListGroups(r), None);
            }
            let auth = a.detached();
            Gate::Pass(
                RequestKind::ListGroups(r),
                fix(move |resp| {
                    if let ResponseKind::ListGroups(resp) = resp {
                        resp.groups.retain(|g| auth.allows(resource::GROUP, &g.group_id, op::DESCRIBE));
                    }
                }),
            )
        }
        RequestKind::DeleteGroups(mut r) => {
            let (ok, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.groups_names).into_iter().partition(|g| group(g, op::DELETE));
            r.groups_names = ok;
            if denied.is_empty() {
                return Gate::Pass(RequestKind::DeleteGroups(r), None);
            }
            Gate::Pass(
                RequestKind::DeleteGroups(r),
                fix(move |resp| {
                    let ResponseKind::DeleteGroups(resp) = resp else { return };
                    for g in denied {
                        resp.results.push(
                            m::delete_groups_response::DeletableGroupResult::default()
                                .with_group_id(g)
                                .with_error_code(GROUP_DENIED),
                        );
                    }
                }),
            )
        }
        // ApiVersions and the SASL exchange need no authorization.
        other => Gate::Pass(other, None),
    }
}

/// OffsetFetch: DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED), DESCRIBE on each topic
/// (named topics refused per partition; "all topics" filtered).
fn offset_fetch(a: &Authz, mut r: m::OffsetFetchRequest, version: i16) -> Gate {
    let group_ok = |g: &str| a.allows(resource::GROUP, g, op::DESCRIBE);
    let topic_ok = |t: &str| a.allows(resource::TOPIC, t, op::DESCRIBE);
    if version < 8 {
        if !group_ok(&r.group_id) {
            let mut resp = m::OffsetFetchResponse::default().with_error_code(GROUP_DENIED);
            // v1 has no top-level error: each requested partition carries it.
            if let Some(topics) = &r.topics {
                resp.topics = topics
                    .iter()
                    .map(|t| {
                        m::offset_fetch_response::OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        m::offset_fetch_response::OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_error_code(GROUP_DENIED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            return Gate::Refuse(ResponseKind::OffsetFetch(resp));
        }
        let all = r.topics.is_none();
        let mut denied = Vec::new();
        if let Some(topics) = r.topics.as_mut() {
            let (ok, refused): (Vec<_>, Vec<_>) = std::mem::take(topics).into_iter().partition(|t| topic_ok(&t.name));
            *topics = ok;
            denied = refused;
        }
        let auth = a.detached();
        return Gate::Pass(
            RequestKind::OffsetFetch(r),
            fix(move |resp| {
                let ResponseKind::OffsetFetch(resp) = resp else { return };
                if all {
                    resp.topics.retain(|t| auth.allows(resource::TOPIC, &t.name, op::DESCRIBE));
                }
                for t in denied {
                    let parts = t
                        .partition_indexes
                        .iter()
                        .map(|&p| {
                            m::offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(TOPIC_DENIED)
                        })
                        .collect();
                    resp.topics.push(
                        m::offset_fetch_response::OffsetFetchResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(parts),
                    );
                }
            }),
        );
    }
    // v8+: several groups, each with its own error.
    let (ok, denied_groups): (Vec<_>, Vec<_>) =
        std::mem::take(&mut r.groups).into_iter().partition(|g| group_ok(&g.group_id));
    r.groups = ok;
    let mut denied_topics = Vec::new();
    let mut all_topics = Vec::new();
    for g in &mut r.groups {
        match g.topics.as_mut() {
            None => all_topics.push(g.group_id.clone()),
            Some(topics) => {
                let (ok, refused): (Vec<_>, Vec<_>) =
                    std::mem::take(topics).into_iter().partition(|t| topic_ok(&t.name));
                *topics = ok;
                if !refused.is_empty() {
                    denied_topics.push((g.group_id.clone(), refused));
                }
            }
        }
    }
    let auth = a.detached();
    Gate::Pass(
        RequestKind::OffsetFetch(r),
        fix(move |resp| {
            let ResponseKind::OffsetFetch(resp) = resp else { return };
            for g in &mut resp.groups {
                if all_topics.contains(&g.group_id) {
                    g.topics.retain(|t| auth.allows(resource::TOPIC, &t.name, op::DESCRIBE));
                }
                if let Some((_, refused)) = denied_topics.iter().find(|(id, _)| *id == g.group_id) {
                    for t in refused {
                        let parts = t
                            .partition_indexes
                            .iter()
                            .map(|&p| {
                                m::offset_fetch_response::OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect();
                        g.topics.push(
                            m::offset_fetch_response::OffsetFetchResponseTopics::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(parts),
                        );
                    }
                }
            }
            for g in denied_groups {
                resp.groups.push(
                    m::offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(GROUP_DENIED),
                );
            }
        }),
    )
}
