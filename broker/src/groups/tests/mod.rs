//! Coordinator tests over a real broker (tempdir storage), driven through the request
//! handlers: each request and response goes through the codec at the version used, so the
//! tests also check that every answer encodes at that version.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod membership;
mod offsets;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::handlers::{dispatch, supported_versions};
use super::GroupSettings;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::RunningBroker;

/// A broker on `dir`, with group limits short enough for tests.
async fn start(dir: &Path) -> RunningBroker {
    let config = BrokerConfig::embedded(dir, "127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
    let running = RunningBroker::start(config).await.unwrap();
    running.broker.groups.set_settings(GroupSettings {
        min_session_timeout_ms: 10,
        initial_rebalance_delay_ms: 100,
        ..GroupSettings::default()
    });
    running
}

async fn topic(b: &Broker, name: &str, partitions: i32) {
    b.create_topic(name, partitions, BTreeMap::new(), false).await.unwrap();
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Sends `request` as a client would at `version`: encoded, decoded by the broker's codec,
/// handled, and the answer encoded and decoded back.
async fn call(b: &Arc<Broker>, api: ApiKey, request: RequestKind, version: i16) -> ResponseKind {
    let (min, max) = supported_versions(api).expect("a group API");
    assert!((min..=max).contains(&version), "{api:?} v{version} is not advertised ({min}..={max})");
    let mut buf = BytesMut::new();
    request.encode(&mut buf, version).unwrap_or_else(|e| panic!("{api:?} v{version} request: {e}"));
    let request = RequestKind::decode(api, &mut buf.freeze(), version).unwrap();
    let response = dispatch(b, request, version, &crate::groups::ClientInfo::default()).await.expect("handled");
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).unwrap_or_else(|e| panic!("{api:?} v{version} response does not encode: {e}"));
    ResponseKind::decode(api, &mut buf.freeze(), version).unwrap()
}

/// One test client in a group.
#[derive(Debug, Clone)]
struct TestMember {
    b: Arc<Broker>,
    group: String,
    id: String,
    instance: Option<String>,
    generation: i32,
    session_ms: i32,
    rebalance_ms: i32,
    protocols: Vec<(String, Bytes)>,
    version: i16,
}

impl TestMember {
    fn new(b: &Arc<Broker>, group: &str) -> Self {
        TestMember {
            b: b.clone(),
            group: group.to_string(),
            id: String::new(),
            instance: None,
            generation: -1,
            session_ms: 10_000,
            rebalance_ms: 5_000,
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            version: 5,
        }
    }

    fn with_instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.to_string());
        self
    }

    async fn join_once(&self) -> JoinGroupResponse {
        let protocols = self
            .protocols
            .iter()
            .map(|(n, m)| JoinGroupRequestProtocol::default().with_name(s(n)).with_metadata(m.clone()))
            .collect();
        let mut r = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(self.session_ms)
            .with_member_id(s(&self.id))
            .with_protocol_type(s("consumer"))
            .with_protocols(protocols);
        if self.version >= 1 {
            r = r.with_rebalance_timeout_ms(self.rebalance_ms);
        }
        if self.version >= 5 {
            r = r.with_group_instance_id(self.instance.as_deref().map(s));
        }
        match call(&self.b, ApiKey::JoinGroup, RequestKind::JoinGroup(r), self.version).await {
            ResponseKind::JoinGroup(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Joins (following MEMBER_ID_REQUIRED) and takes the id and generation given.
    async fn join(&mut self) -> JoinGroupResponse {
        let mut r = self.join_once().await;
        if r.error_code == ResponseError::MemberIdRequired.code() {
            assert!(self.id.is_empty());
            self.id = r.member_id.to_string();
            r = self.join_once().await;
        }
        if r.error_code == 0 {
            self.id = r.member_id.to_string();
            self.generation = r.generation_id;
        }
        r
    }

    async fn sync(&self, assignments: &[(&str, &[u8])]) -> SyncGroupResponse {
        let assignments = assignments
            .iter()
            .map(|(m, a)| {
                SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(Bytes::copy_from_slice(a))
            })
            .collect();
        let version = self.version.min(5);
        let mut r = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.id))
            .with_assignments(assignments);
        if version >= 3 {
            r = r.with_group_instance_id(self.instance.as_deref().map(s));
        }
        if version >= 5 {
            r = r.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s(&self.protocols[0].0)));
        }
        match call(&self.b, ApiKey::SyncGroup, RequestKind::SyncGroup(r), version).await {
            ResponseKind::SyncGroup(r) => r,
            other => panic!("{other:?}"),
        }
    }

    async fn heartbeat(&self) -> i16 {
        let version = self.version.min(4);
        let mut r = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.id));
        if version >= 3 {
            r = r.with_group_instance_id(self.instance.as_deref().map(s));
        }
        match call(&self.b, ApiKey::Heartbeat, RequestKind::Heartbeat(r), version).await {
            ResponseKind::Heartbeat(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    async fn leave(&self) -> i16 {
        let version = self.version.min(5);
        let mut r = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.group)));
        r = if version >= 3 {
            r.with_members(vec![MemberIdentity::default()
                .with_member_id(s(&self.id))
                .with_group_instance_id(self.instance.as_deref().map(s))])
        } else {
            r.with_member_id(s(&self.id))
        };
        match call(&self.b, ApiKey::LeaveGroup, RequestKind::LeaveGroup(r), version).await {
            ResponseKind::LeaveGroup(r) if version >= 3 => {
                assert_eq!(r.error_code, 0);
                r.members[0].error_code
            }
            ResponseKind::LeaveGroup(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    /// Commits `offsets` of `topic` as this member; one error code per partition.
    async fn commit(&self, topic: &str, offsets: &[(i32, i64)]) -> Vec<i16> {
        commit(&self.b, &self.group, self.generation, &self.id, topic, offsets, 8).await
    }
}

async fn commit(
    b: &Arc<Broker>,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offsets: &[(i32, i64)],
    version: i16,
) -> Vec<i16> {
    let partitions = offsets
        .iter()
        .map(|(p, o)| {
            let r = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_metadata(Some(s(&format!("m{o}"))));
            if version >= 6 {
                r.with_committed_leader_epoch(3)
            } else {
                r
            }
        })
        .collect();
    let r = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(partitions)]);
    match call(b, ApiKey::OffsetCommit, RequestKind::OffsetCommit(r), version).await {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions.iter().map(|p| p.error_code).collect(),
        other => panic!("{other:?}"),
    }
}

/// Committed offsets (v7): `None` topics asks for all; returns (topic, partition, offset,
/// leader epoch, metadata).
async fn fetch(
    b: &Arc<Broker>,
    group: &str,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> Vec<(String, i32, i64, i32, String)> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let topics = topics.map(|ts| {
        ts.into_iter()
            .map(|(t, ps)| OffsetFetchRequestTopic::default().with_name(TopicName(s(t))).with_partition_indexes(ps))
            .collect()
    });
    let r = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(topics);
    match call(b, ApiKey::OffsetFetch, RequestKind::OffsetFetch(r), 7).await {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.error_code, 0);
            r.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        assert_eq!(p.error_code, 0);
                        let metadata = p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
                        (
                            t.name.0.to_string(),
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            metadata,
                        )
                    })
                })
                .collect()
        }
        other => panic!("{other:?}"),
    }
}

async fn describe(b: &Arc<Broker>, group: &str) -> describe_groups_response::DescribedGroup {
    let r = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    match call(b, ApiKey::DescribeGroups, RequestKind::DescribeGroups(r), 5).await {
        ResponseKind::DescribeGroups(mut r) => r.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

use kafka_protocol::ResponseError;
