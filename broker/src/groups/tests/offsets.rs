//! Offset commits and fetches, group deletion, and what survives a restart.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_fetches_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    topic(&b, "t", 3).await;
    topic(&b, "u", 1).await;
    // A standalone consumer: no membership, generation -1.
    assert_eq!(commit(&b, "solo", -1, "", "t", &[(0, 10), (1, 11), (2, 12)], 8).await, [0, 0, 0]);
    assert_eq!(commit(&b, "solo", -1, "", "u", &[(0, 7)], 2).await, [0]);
    assert_eq!(commit(&b, "solo", -1, "", "t", &[(0, 20)], 8).await, [0], "a later commit replaces the earlier");
    assert_eq!(
        fetch(&b, "solo", Some(vec![("t", vec![0, 2]), ("u", vec![0, 5])])).await,
        [
            ("t".to_string(), 0, 20, 3, "m20".to_string()),
            ("t".into(), 2, 12, 3, "m12".into()),
            ("u".into(), 0, 7, -1, "m7".into()),
            ("u".into(), 5, -1, -1, String::new()),
        ],
        "v2 commits carry no leader epoch; partitions without a commit get -1"
    );
    let all = fetch(&b, "solo", None).await;
    assert_eq!(
        all.iter().map(|(t, p, o, _, _)| (t.as_str(), *p, *o)).collect::<Vec<_>>(),
        [("t", 0, 20), ("t", 1, 11), ("t", 2, 12), ("u", 0, 7)]
    );
    assert_eq!(fetch(&b, "unknown", None).await, []);
    assert_eq!(fetch(&b, "unknown", Some(vec![("t", vec![1])])).await, [("t".to_string(), 1, -1, -1, String::new())]);

    let unknown_topic = commit(&b, "solo", -1, "", "nope", &[(0, 1)], 8).await;
    assert_eq!(unknown_topic, [ResponseError::UnknownTopicOrPartition.code()]);
    assert_eq!(commit(&b, "solo", -1, "", "t", &[(9, 1)], 8).await, [ResponseError::UnknownTopicOrPartition.code()]);
    assert_eq!(commit(&b, "", -1, "", "t", &[(0, 1)], 8).await, [ResponseError::InvalidGroupId.code()]);
    assert_eq!(commit(&b, "never", 3, "m", "t", &[(0, 1)], 8).await, [ResponseError::IllegalGeneration.code()]);

    // v8 fetches several groups at once.
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    let r = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("solo"))).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("unknown"))).with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(r) = call(&b, ApiKey::OffsetFetch, RequestKind::OffsetFetch(r), 8).await else {
        panic!()
    };
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 4);
    assert!(r.groups[1].topics.is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_current_members_commit_to_an_active_group() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    topic(&b, "t", 2).await;
    let mut m = TestMember::new(&b, "g");
    assert_eq!(m.join().await.error_code, 0);
    // Joined but not synced: the member must wait for its assignment.
    assert_eq!(m.commit("t", &[(0, 1)]).await, [ResponseError::RebalanceInProgress.code()]);
    let id = m.id.clone();
    assert_eq!(m.sync(&[(&id, b"x")]).await.error_code, 0);
    assert_eq!(m.commit("t", &[(0, 5), (1, 6)]).await, [0, 0]);
    assert_eq!(
        commit(&b, "g", -1, "", "t", &[(0, 1)], 8).await,
        [ResponseError::UnknownMemberId.code()],
        "standalone commits need an empty group"
    );
    assert_eq!(
        commit(&b, "g", m.generation + 1, &m.id, "t", &[(0, 1)], 8).await,
        [ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&b, "g", m.generation, "stranger", "t", &[(0, 1)], 8).await,
        [ResponseError::UnknownMemberId.code()]
    );
    let big = "x".repeat(5000);
    let r = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(s(&m.id))
        .with_topics(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(9)
                    .with_committed_metadata(Some(s(&big))),
            ])]);
    let ResponseKind::OffsetCommit(r) = call(&b, ApiKey::OffsetCommit, RequestKind::OffsetCommit(r), 8).await else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, ResponseError::OffsetMetadataTooLarge.code());
    assert_eq!(fetch(&b, "g", None).await.iter().map(|x| x.2).collect::<Vec<_>>(), [5, 6]);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_groups() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    topic(&b, "t", 1).await;
    let mut m = TestMember::new(&b, "g");
    m.join().await;
    let delete = |names: Vec<&str>| {
        let b = b.clone();
        let r = DeleteGroupsRequest::default().with_groups_names(names.into_iter().map(|n| GroupId(s(n))).collect());
        async move {
            let ResponseKind::DeleteGroups(r) = call(&b, ApiKey::DeleteGroups, RequestKind::DeleteGroups(r), 2).await
            else {
                panic!()
            };
            r.results.iter().map(|x| x.error_code).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        delete(vec!["g", "nope"]).await,
        [ResponseError::NonEmptyGroup.code(), ResponseError::GroupIdNotFound.code()]
    );
    assert_eq!(m.leave().await, 0);
    assert_eq!(commit(&b, "g", -1, "", "t", &[(0, 3)], 8).await, [0]);
    assert_eq!(delete(vec!["g"]).await, [0]);
    assert_eq!(fetch(&b, "g", None).await, []);
    assert_eq!(describe(&b, "g").await.group_state.as_str(), "Dead");
    assert_eq!(delete(vec!["g"]).await, [ResponseError::GroupIdNotFound.code()]);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let b = running.broker.clone();
    topic(&b, "t", 3).await;
    let mut m = TestMember::new(&b, "g");
    m.join().await;
    let id = m.id.clone();
    assert_eq!(m.sync(&[(&id, b"mine")]).await.error_code, 0);
    assert_eq!(m.commit("t", &[(0, 100), (1, 101)]).await, [0, 0]);
    assert_eq!(m.commit("t", &[(1, 111)]).await, [0]);
    assert_eq!(commit(&b, "solo", -1, "", "t", &[(2, 42)], 8).await, [0]);
    assert_eq!(commit(&b, "gone", -1, "", "t", &[(0, 1)], 8).await, [0]);
    let r = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("gone"))]);
    call(&b, ApiKey::DeleteGroups, RequestKind::DeleteGroups(r), 2).await;
    running.shutdown().await.unwrap();
    // The old broker must be gone (it holds the WAL's lock) before the new one starts.
    let (group, generation) = (m.group.clone(), m.generation);
    drop((b, m));

    let running = start(dir.path()).await;
    let b = running.broker.clone();
    assert_eq!(
        fetch(&b, "g", None).await,
        [("t".to_string(), 0, 100, 3, "m100".to_string()), ("t".into(), 1, 111, 3, "m111".into())]
    );
    assert_eq!(fetch(&b, "solo", Some(vec![("t", vec![2])])).await, [("t".to_string(), 2, 42, 3, "m42".to_string())]);
    assert_eq!(fetch(&b, "gone", None).await, []);
    // The group resumes where it was: same generation, member and assignment.
    let d = describe(&b, "g").await;
    assert_eq!((d.group_state.as_str(), d.protocol_data.as_str(), d.members.len()), ("Stable", "range", 1));
    assert_eq!((d.members[0].member_id.as_str(), d.members[0].member_assignment.as_ref()), (id.as_str(), &b"mine"[..]));
    let mut m = TestMember::new(&b, &group);
    (m.id, m.generation) = (id, generation);
    assert_eq!(m.heartbeat().await, 0);
    assert_eq!(m.commit("t", &[(2, 7)]).await, [0]);
    assert_eq!(describe(&b, "gone").await.group_state.as_str(), "Dead");
    running.shutdown().await.unwrap();
}
