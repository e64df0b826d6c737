//! Joining, syncing, heartbeats, leaving, expiry and static membership.

use std::time::{Duration, Instant};

use super::*;

/// Joins every member concurrently, then syncs them all (the leader assigns `a-<member id>`
/// to each); returns the members with their ids and generation, leader first.
async fn form(members: Vec<TestMember>) -> Vec<TestMember> {
    let joins: Vec<_> = members
        .into_iter()
        .map(|mut m| {
            tokio::spawn(async move {
                let r = m.join().await;
                assert_eq!(r.error_code, 0, "join: {r:?}");
                (m, r)
            })
        })
        .collect();
    let mut joined = Vec::new();
    for j in joins {
        joined.push(j.await.unwrap());
    }
    let leader = joined[0].1.leader.to_string();
    assert!(joined.iter().all(|(_, r)| r.leader.as_str() == leader && r.generation_id == joined[0].1.generation_id));
    let ids: Vec<String> = joined.iter().map(|(m, _)| m.id.clone()).collect();
    let assignments: Vec<(String, Vec<u8>)> =
        ids.iter().map(|id| (id.clone(), format!("a-{id}").into_bytes())).collect();
    let syncs: Vec<_> = joined
        .iter()
        .map(|(m, _)| {
            let (m, assignments, leader) = (m.clone(), assignments.clone(), leader.clone());
            tokio::spawn(async move {
                let a: Vec<(&str, &[u8])> = assignments.iter().map(|(id, a)| (id.as_str(), a.as_slice())).collect();
                let r = m.sync(if m.id == leader { &a } else { &[] }).await;
                assert_eq!(r.error_code, 0, "sync: {r:?}");
                assert_eq!(r.assignment.as_ref(), format!("a-{}", m.id).as_bytes());
            })
        })
        .collect();
    for s in syncs {
        s.await.unwrap();
    }
    let mut members: Vec<TestMember> = joined.into_iter().map(|(m, _)| m).collect();
    members.sort_by_key(|m| m.id != leader);
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_join_sync_and_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let joins: Vec<_> = (0..3)
        .map(|_| {
            let mut m = TestMember::new(&b, "g");
            tokio::spawn(async move {
                let r = m.join().await;
                (m, r)
            })
        })
        .collect();
    let mut joined = Vec::new();
    for j in joins {
        joined.push(j.await.unwrap());
    }
    let leader = joined[0].1.leader.to_string();
    for (m, r) in &joined {
        assert_eq!(r.error_code, 0);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader.as_str(), leader);
        assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
        // Only the leader learns the members and their metadata.
        if m.id == leader {
            assert_eq!(r.members.len(), 3);
            assert!(r.members.iter().all(|x| x.metadata.as_ref() == b"sub"));
        } else {
            assert!(r.members.is_empty());
        }
    }
    let mut ids: Vec<&str> = joined.iter().map(|(m, _)| m.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "member ids are distinct");

    // Followers sync first and wait for the leader's assignments.
    let followers: Vec<_> = joined
        .iter()
        .filter(|(m, _)| m.id != leader)
        .map(|(m, _)| {
            let m = m.clone();
            tokio::spawn(async move { (m.id.clone(), m.sync(&[]).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(followers.iter().all(|f| !f.is_finished()), "followers wait for the leader");
    let assignments: Vec<(String, Vec<u8>)> =
        joined.iter().map(|(m, _)| (m.id.clone(), format!("a-{}", m.id).into_bytes())).collect();
    let a: Vec<(&str, &[u8])> = assignments.iter().map(|(id, a)| (id.as_str(), a.as_slice())).collect();
    let leader_m = joined.iter().find(|(m, _)| m.id == leader).unwrap().0.clone();
    let r = leader_m.sync(&a).await;
    assert_eq!((r.error_code, r.assignment.as_ref()), (0, format!("a-{leader}").as_bytes()));
    for f in followers {
        let (id, r) = f.await.unwrap();
        assert_eq!(r.error_code, 0);
        assert_eq!(r.assignment.as_ref(), format!("a-{id}").as_bytes());
        assert_eq!(r.protocol_type.as_ref().map(|p| p.as_str()), Some("consumer"));
        assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    }
    for (m, _) in &joined {
        assert_eq!(m.heartbeat().await, 0);
    }
    let d = describe(&b, "g").await;
    assert_eq!(
        (d.group_state.as_str(), d.protocol_type.as_str(), d.protocol_data.as_str()),
        ("Stable", "consumer", "range")
    );
    assert_eq!(d.members.len(), 3);
    assert!(d.members.iter().all(|m| m.member_assignment.as_ref() == format!("a-{}", m.member_id.as_str()).as_bytes()));
    let r = ListGroupsRequest::default().with_states_filter(vec![s("stable")]);
    let ResponseKind::ListGroups(r) = call(&b, ApiKey::ListGroups, RequestKind::ListGroups(r), 4).await else {
        panic!()
    };
    assert_eq!(r.groups.len(), 1);
    assert_eq!((r.groups[0].group_id.0.as_str(), r.groups[0].group_state.as_str()), ("g", "Stable"));
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_rebalances_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let mut a = TestMember::new(&b, "g");
    a.version = 9;
    let mut c = TestMember::new(&b, "g");
    c.version = 2; // no MEMBER_ID_REQUIRED, LeaveGroup v2
    let members = form(vec![a, c]).await;
    let (mut a, c) = if members[0].version == 9 {
        (members[0].clone(), members[1].clone())
    } else {
        (members[1].clone(), members[0].clone())
    };
    assert_eq!(a.generation, 1);
    assert_eq!(c.leave().await, 0);
    assert_eq!(a.heartbeat().await, ResponseError::RebalanceInProgress.code());
    let started = Instant::now();
    let r = a.join().await;
    assert!(started.elapsed() < Duration::from_secs(2), "the only member left rejoined: no need to wait");
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (0, 2, a.id.as_str()));
    assert_eq!(r.members.len(), 1);
    assert_eq!(a.sync(&[(&a.id.clone(), b"x")]).await.assignment.as_ref(), b"x");
    assert_eq!(a.heartbeat().await, 0);
    assert_eq!(c.heartbeat().await, ResponseError::UnknownMemberId.code());
    assert_eq!(a.leave().await, 0);
    assert_eq!(describe(&b, "g").await.group_state.as_str(), "Empty");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_rebalances_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let mut quiet = TestMember::new(&b, "g");
    quiet.session_ms = 400;
    let members = form(vec![TestMember::new(&b, "g"), quiet]).await;
    let (mut alive, quiet) = if members[0].session_ms == 400 {
        (members[1].clone(), members[0].clone())
    } else {
        (members[0].clone(), members[1].clone())
    };
    let started = Instant::now();
    let mut code = 0;
    while started.elapsed() < Duration::from_secs(5) {
        code = alive.heartbeat().await;
        if code != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, ResponseError::RebalanceInProgress.code());
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the session timeout");
    let r = alive.join().await;
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 2, 1));
    assert_eq!(quiet.heartbeat().await, ResponseError::UnknownMemberId.code());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let mut m = TestMember::new(&b, "g");
    m.rebalance_ms = 600;
    let members = form(vec![m.clone(), m]).await;
    let (mut first, stale) = (members[0].clone(), members[1].clone());
    // A newcomer starts a rebalance; `stale` keeps heartbeating but never rejoins.
    let mut newcomer = TestMember::new(&b, "g");
    newcomer.rebalance_ms = 600;
    let started = Instant::now();
    let newcomer_join = tokio::spawn(async move {
        let r = newcomer.join().await;
        (newcomer, r)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stale.heartbeat().await, ResponseError::RebalanceInProgress.code());
    assert_eq!(first.heartbeat().await, ResponseError::RebalanceInProgress.code());
    let r = first.join().await;
    let (_, nr) = newcomer_join.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500), "waited for the missing member: {:?}", started.elapsed());
    assert_eq!((r.error_code, r.generation_id, nr.generation_id), (0, 2, 2));
    let d = describe(&b, "g").await;
    assert_eq!((d.group_state.as_str(), d.members.len()), ("CompletingRebalance", 2));
    assert_eq!(stale.heartbeat().await, ResponseError::UnknownMemberId.code());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_delay_gathers_members_into_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    b.groups.set_settings(GroupSettings {
        initial_rebalance_delay_ms: 400,
        min_session_timeout_ms: 10,
        ..GroupSettings::default()
    });
    let mut first = TestMember::new(&b, "g");
    let early = tokio::spawn(async move { first.join().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!early.is_finished(), "the first member waits for others");
    let mut second = TestMember::new(&b, "g");
    let r2 = second.join().await;
    let r1 = early.await.unwrap();
    assert_eq!((r1.generation_id, r2.generation_id), (1, 1));
    assert_eq!(r1.members.len().max(r2.members.len()), 2);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_rejoins_without_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let members =
        form(vec![TestMember::new(&b, "g").with_instance("i-1"), TestMember::new(&b, "g").with_instance("i-2")]).await;
    let (leader, follower) = (members[0].clone(), members[1].clone());
    // The follower restarts: same instance id, no member id.
    let mut again = TestMember::new(&b, "g").with_instance(follower.instance.as_deref().unwrap());
    let r = again.join().await;
    assert_eq!(r.error_code, 0);
    assert_ne!(again.id, follower.id);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, leader.id.as_str()));
    assert!(r.members.is_empty());
    assert_eq!(
        again.sync(&[]).await.assignment.as_ref(),
        format!("a-{}", follower.id).as_bytes(),
        "keeps its assignment"
    );
    assert_eq!(follower.heartbeat().await, ResponseError::FencedInstanceId.code());
    assert_eq!(leader.heartbeat().await, 0, "no rebalance");
    assert_eq!(again.heartbeat().await, 0);
    // The leader restarts with v9: told to skip the assignment, with the members' metadata.
    let mut leader_again = TestMember::new(&b, "g").with_instance(leader.instance.as_deref().unwrap());
    leader_again.version = 9;
    let r = leader_again.join().await;
    assert_eq!((r.error_code, r.generation_id, r.skip_assignment, r.members.len()), (0, 1, true, 2));
    assert_eq!(r.leader.as_str(), leader_again.id);
    assert_eq!(leader.heartbeat().await, ResponseError::FencedInstanceId.code());
    assert_eq!(again.heartbeat().await, 0);
    let d = describe(&b, "g").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    let mut instances: Vec<String> =
        d.members.iter().map(|m| m.group_instance_id.as_ref().unwrap().to_string()).collect();
    instances.sort();
    assert_eq!(instances, ["i-1", "i-2"]);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_validated_and_protocols_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    let mut m = TestMember::new(&b, "g");
    m.session_ms = 5;
    assert_eq!(m.join().await.error_code, ResponseError::InvalidSessionTimeout.code());
    let mut m = TestMember::new(&b, "");
    assert_eq!(m.join().await.error_code, ResponseError::InvalidGroupId.code());
    let mut m = TestMember::new(&b, "nobody");
    m.id = "made-up".into();
    assert_eq!(m.join().await.error_code, ResponseError::UnknownMemberId.code());

    let mut both = TestMember::new(&b, "g");
    both.protocols = vec![("range".into(), Bytes::from_static(b"r")), ("roundrobin".into(), Bytes::from_static(b"rr"))];
    let mut rr = TestMember::new(&b, "g");
    rr.protocols = vec![("roundrobin".into(), Bytes::from_static(b"rr"))];
    let (j1, j2) = tokio::join!(both.join(), rr.join());
    assert_eq!((j1.error_code, j2.error_code), (0, 0));
    assert_eq!(
        j1.protocol_name.as_ref().map(|p| p.as_str()),
        Some("roundrobin"),
        "the one protocol every member supports"
    );
    let leader = if j1.members.is_empty() { j2 } else { j1 };
    assert!(leader.members.iter().all(|m| m.metadata.as_ref() == b"rr"), "metadata of the chosen protocol");
    let mut other = TestMember::new(&b, "g");
    other.protocols = vec![("sticky".into(), Bytes::new())];
    assert_eq!(other.join().await.error_code, ResponseError::InconsistentGroupProtocol.code());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    topic(&b, "t", 1).await;
    for v in 0..=9 {
        let group = format!("g{v}");
        let mut m = TestMember::new(&b, &group);
        m.version = v;
        let r = m.join().await;
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        let id = m.id.clone();
        assert_eq!(m.sync(&[(&id, b"x")]).await.assignment.as_ref(), b"x", "SyncGroup v{}", v.min(5));
        assert_eq!(m.heartbeat().await, 0, "Heartbeat v{}", v.min(4));
        let cv = v.clamp(2, 8);
        assert_eq!(commit(&b, &group, m.generation, &m.id, "t", &[(0, 5)], cv).await, [0], "OffsetCommit v{cv}");
        assert_eq!(m.leave().await, 0, "LeaveGroup v{}", v.min(5));
    }
    for v in 1..=8 {
        use kafka_protocol::messages::offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
        };
        let r = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g3")))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default().with_group_id(GroupId(s("g3"))).with_topics(Some(vec![
                OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0]),
            ]))
        };
        let ResponseKind::OffsetFetch(r) = call(&b, ApiKey::OffsetFetch, RequestKind::OffsetFetch(r), v).await else {
            panic!()
        };
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 5, "OffsetFetch v{v}");
    }
    for v in 0..=5 {
        let r = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g1")), GroupId(s("unknown"))]);
        let ResponseKind::DescribeGroups(r) = call(&b, ApiKey::DescribeGroups, RequestKind::DescribeGroups(r), v).await
        else {
            panic!()
        };
        let states: Vec<&str> = r.groups.iter().map(|g| g.group_state.as_str()).collect();
        assert_eq!(states, ["Empty", "Dead"], "DescribeGroups v{v}");
    }
    for v in 0..=4 {
        let ResponseKind::ListGroups(r) =
            call(&b, ApiKey::ListGroups, RequestKind::ListGroups(ListGroupsRequest::default()), v).await
        else {
            panic!()
        };
        assert_eq!(r.groups.len(), 10, "ListGroups v{v}");
    }
    for v in 0..=2 {
        let r = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&format!("g{v}")))]);
        let ResponseKind::DeleteGroups(r) = call(&b, ApiKey::DeleteGroups, RequestKind::DeleteGroups(r), v).await
        else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
    }
    let (host, port) = (b.advertised().0.to_string(), b.advertised().1);
    for v in 0..=4 {
        let mut r = FindCoordinatorRequest::default();
        r = if v >= 4 { r.with_coordinator_keys(vec![s("g"), s("tx")]) } else { r.with_key(s("g")) };
        let ResponseKind::FindCoordinator(r) =
            call(&b, ApiKey::FindCoordinator, RequestKind::FindCoordinator(r), v).await
        else {
            panic!()
        };
        if v >= 4 {
            assert_eq!(
                (r.coordinators[0].host.as_str(), r.coordinators[0].port, r.coordinators[0].node_id.0),
                (host.as_str(), port, 1)
            );
        } else {
            assert_eq!(
                (r.error_code, r.host.as_str(), r.port, r.node_id.0),
                (0, host.as_str(), port, 1),
                "FindCoordinator v{v}"
            );
        }
    }
    let r = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("tx")]);
    let ResponseKind::FindCoordinator(r) = call(&b, ApiKey::FindCoordinator, RequestKind::FindCoordinator(r), 4).await
    else {
        panic!()
    };
    assert_eq!(r.coordinators[0].error_code, ResponseError::CoordinatorNotAvailable.code());
    running.shutdown().await.unwrap();
}
