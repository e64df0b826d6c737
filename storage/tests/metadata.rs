//! The metadata log and the catalog on it, checked against every backend.
//!
//! Each body takes a fresh, empty `SharedStore` and is stamped out once per backend by
//! `backends!`, as `memory::<body>`, `file::<body>` and `s3::<body>` (a real SeaweedFS started
//! by `automq_storage::testing`; never skipped). Time is a `ManualClock`, so leases and the
//! truncation grace are deterministic; the clock moves only where a body says so.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test, with its location.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use automq_storage::clock::{ManualClock, SharedClock};
use automq_storage::metadata::{
    Catalog, CatalogConfig, CatalogRecord, DataObject, MetadataLog, MetadataLogConfig, ObjectKind, ObjectRange,
    Recovered, StreamEnd, StreamRange,
};
use automq_storage::object_store::{
    Fault, FaultInjector, FaultRule, MetricsStore, ObjectStoreMetrics, Op, SharedStore, Trigger,
};
use automq_storage::Error;
use bytes::Bytes;

/// Asserts that `$result` is an `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern)),
        }
    };
}

automq_storage::store_tests!(
    concurrent_writers_build_one_linear_history,
    truncation_waits_for_the_grace_and_keeps_the_snapshot_entry,
    the_predecessor_check_runs_only_after_idling_past_the_lease,
    a_zombie_writer_behind_a_truncation_is_fenced,
    a_torn_entry_is_skipped_and_the_log_goes_on,
    a_reopened_catalog_has_the_same_state,
    concurrent_submissions_are_group_committed,
    a_rejected_submission_leaves_the_rest_of_its_group_committed,
    a_fenced_catalog_catches_up_and_applies_its_submission_once,
    refresh_follows_another_writer_and_recovers_from_fencing,
);

const START_MS: u64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(120);
const LEASE_MS: u64 = LEASE.as_millis() as u64;
const GRACE_MS: u64 = GRACE.as_millis() as u64;

fn log_config(prefix: &str) -> MetadataLogConfig {
    MetadataLogConfig { prefix: prefix.to_string(), lease: LEASE, truncate_grace: GRACE }
}

fn catalog_config(snapshot_every: u64) -> CatalogConfig {
    CatalogConfig { log: log_config("meta"), snapshot_every, ..CatalogConfig::default() }
}

fn manual_clock() -> (Arc<ManualClock>, SharedClock) {
    let clock = ManualClock::new(START_MS);
    (clock.clone(), clock)
}

/// `store` behind a metrics decorator, and its counters.
fn counted(store: SharedStore) -> (SharedStore, ObjectStoreMetrics) {
    let metrics = ObjectStoreMetrics::unregistered();
    (Arc::new(MetricsStore::new(store, metrics.clone())), metrics)
}

/// `store` with every conditional create delayed, so a commit is still in flight when the
/// next submissions arrive.
fn slow_creates(store: SharedStore) -> SharedStore {
    let faults = FaultInjector::new(store, 7);
    faults.add_rule(FaultRule::new(Fault::Latency(Duration::from_millis(20)), Trigger::Always).on(Op::PutIfAbsent));
    Arc::new(faults)
}

fn text(payload: &Bytes) -> String {
    String::from_utf8(payload.to_vec()).unwrap()
}

fn entries(recovered: &Recovered) -> Vec<(u64, String)> {
    recovered.entries.iter().map(|(seq, payload)| (*seq, text(payload))).collect()
}

/// What a reader that has never seen the log finds in it.
async fn read_fresh(store: &SharedStore, prefix: &str) -> Recovered {
    let (_, clock) = manual_clock();
    MetadataLog::open(store.clone(), log_config(prefix), clock).await.unwrap().1
}

/// The sequence numbers of the objects under `{prefix}/{kind}/`.
async fn seqs(store: &SharedStore, prefix: &str, kind: &str) -> Vec<u64> {
    let dir = format!("{prefix}/{kind}/");
    store.list(&dir).await.unwrap().iter().map(|m| m.key.strip_prefix(&dir).unwrap().parse().unwrap()).collect()
}

// ---------------------------------------------------------------- metadata log

/// Appends what `caught_up` shows to a writer's view of the log, which must stay gap-free.
fn extend_view(writer: usize, view: &mut Vec<(u64, String)>, caught_up: Recovered) {
    assert!(caught_up.snapshot.is_none(), "writer {writer}: nobody wrote a snapshot");
    for (seq, payload) in caught_up.entries {
        assert_eq!(seq, view.len() as u64 + 1, "writer {writer}: catching up skipped or repeated an entry");
        view.push((seq, text(&payload)));
    }
}

async fn concurrent_writers_build_one_linear_history(store: SharedStore) {
    const WRITERS: usize = 5;
    const RECORDS: usize = 20;
    let (store, metrics) = counted(store);
    let (_, clock) = manual_clock();
    // Every writer opens the empty log before anyone appends, so all but one must lose
    // sequence 1 and find out.
    let mut logs = Vec::new();
    for _ in 0..WRITERS {
        logs.push(MetadataLog::open(store.clone(), log_config("meta"), clock.clone()).await.unwrap().0);
    }
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(w, mut log)| {
            let start = start.clone();
            tokio::spawn(async move {
                // Everything this writer appended or read, in sequence order.
                let mut view: Vec<(u64, String)> = Vec::new();
                let (mut attempts, mut fenced) = (0u64, 0u64);
                start.wait().await;
                for i in 0..RECORDS {
                    let payload = format!("writer-{w}-record-{i}");
                    loop {
                        attempts += 1;
                        match log.append(payload.as_bytes()).await {
                            Ok(seq) => {
                                let expected = view.len() as u64 + 1;
                                assert_eq!(seq, expected, "writer {w} appended past entries it never read");
                                view.push((seq, payload));
                                break;
                            }
                            Err(Error::Fenced(_)) => {
                                fenced += 1;
                                extend_view(w, &mut view, log.catch_up().await.unwrap());
                            }
                            Err(e) => panic!("writer {w}, record {i}: {e}"),
                        }
                    }
                    tokio::task::yield_now().await;
                }
                (log, view, attempts, fenced)
            })
        })
        .collect();
    let mut finished = Vec::new();
    for task in tasks {
        finished.push(task.await.unwrap());
    }
    let mut outcomes = Vec::new();
    for (w, (mut log, mut view, attempts, fenced)) in finished.into_iter().enumerate() {
        extend_view(w, &mut view, log.catch_up().await.unwrap());
        outcomes.push((view, attempts, fenced));
    }

    let history = entries(&read_fresh(&store, "meta").await);
    let total = (WRITERS * RECORDS) as u64;
    assert_eq!(history.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    let mut position: BTreeMap<&str, u64> = BTreeMap::new();
    for (seq, payload) in &history {
        assert!(position.insert(payload, *seq).is_none(), "{payload} is in the log twice");
    }
    for w in 0..WRITERS {
        let seqs: Vec<u64> = (0..RECORDS)
            .map(|i| format!("writer-{w}-record-{i}"))
            .map(|record| *position.get(record.as_str()).unwrap_or_else(|| panic!("{record} was lost")))
            .collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "writer {w}'s records are out of order: {seqs:?}");
    }
    // Every writer's own view, built from its acknowledged appends and catch-ups (a last one
    // once all are done), is that one history: no acknowledged append landed anywhere but
    // where its writer was told.
    for (w, (view, _, _)) in outcomes.iter().enumerate() {
        let differs = view.iter().zip(&history).position(|(v, h)| v != h);
        assert!(
            view == &history,
            "writer {w} saw {} entries, the log has {}; first difference: {:?} against {:?}",
            view.len(),
            history.len(),
            differs.map(|i| &view[i]),
            differs.map(|i| &history[i]),
        );
    }
    // Every conditional create that did not become an entry was reported as fenced.
    let attempts: u64 = outcomes.iter().map(|o| o.1).sum();
    let fenced: u64 = outcomes.iter().map(|o| o.2).sum();
    assert_eq!(metrics.request_count("put_if_absent"), attempts, "each attempt is one conditional create");
    assert_eq!(attempts, total + fenced, "a lost race went unreported");
    let fenced_writers = outcomes.iter().filter(|o| o.2 > 0).count();
    assert!(fenced_writers >= WRITERS - 1, "only {fenced_writers} writers saw a lost race for sequence 1");
}

async fn truncation_waits_for_the_grace_and_keeps_the_snapshot_entry(store: SharedStore) {
    let (clock, shared) = manual_clock();
    let (mut log, _) = MetadataLog::open(store.clone(), log_config("meta"), shared).await.unwrap();
    for i in 1..=6 {
        assert_eq!(log.append(format!("entry-{i}").as_bytes()).await.unwrap(), i);
    }
    log.write_snapshot(2, b"state@2").await.unwrap();
    log.write_snapshot(4, b"state@4").await.unwrap();

    clock.advance_ms(GRACE_MS - 1);
    assert_eq!(log.truncate().await.unwrap(), 0, "nothing may go before the snapshot is older than the grace");
    assert_eq!(seqs(&store, "meta", "log").await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(seqs(&store, "meta", "snapshot").await, [2, 4]);

    clock.advance_ms(2);
    assert_eq!(log.truncate().await.unwrap(), 4, "entries 1-3 and the older snapshot");
    assert_eq!(seqs(&store, "meta", "log").await, [4, 5, 6], "the snapshot's own entry stays");
    assert_eq!(seqs(&store, "meta", "snapshot").await, [4]);

    let recovered = read_fresh(&store, "meta").await;
    assert_eq!(recovered.snapshot, Some((4, Bytes::from_static(b"state@4"))));
    assert_eq!(entries(&recovered), [(5, "entry-5".into()), (6, "entry-6".into())]);
    // The writer goes on after the entries below it are gone (idle past its lease, so this
    // append also checks that entry 6 is still there).
    assert_eq!(log.append(b"entry-7").await.unwrap(), 7);
    assert_eq!(log.truncate().await.unwrap(), 0, "nothing more is below the snapshot");
    let recovered = read_fresh(&store, "meta").await;
    assert_eq!(recovered.snapshot.as_ref().map(|s| s.0), Some(4));
    assert_eq!(entries(&recovered).last(), Some(&(7, "entry-7".into())));
}

async fn the_predecessor_check_runs_only_after_idling_past_the_lease(store: SharedStore) {
    let (store, metrics) = counted(store);
    let (clock, shared) = manual_clock();
    let (mut log, _) = MetadataLog::open(store.clone(), log_config("meta"), shared).await.unwrap();
    assert_eq!(log.append(b"1").await.unwrap(), 1);
    for seq in 2..=4 {
        clock.advance_ms(LEASE_MS / 2);
        assert_eq!(log.append(seq.to_string().as_bytes()).await.unwrap(), seq);
    }
    assert_eq!(metrics.request_count("head"), 0, "each append renews the lease; no HEAD while appending steadily");

    clock.advance_ms(LEASE_MS + 1);
    assert_eq!(log.append(b"5").await.unwrap(), 5, "the predecessor is there: not a zombie");
    assert_eq!(metrics.request_count("head"), 1, "idle past the lease: one HEAD of the previous entry");
    assert_eq!(log.append(b"6").await.unwrap(), 6);
    assert_eq!(metrics.request_count("head"), 1, "the check renewed the lease");
    assert_eq!(read_fresh(&store, "meta").await.entries.len(), 6);
}

async fn a_zombie_writer_behind_a_truncation_is_fenced(store: SharedStore) {
    let (clock, shared) = manual_clock();
    let (mut a, _) = MetadataLog::open(store.clone(), log_config("meta"), shared.clone()).await.unwrap();
    for seq in 1..=3 {
        assert_eq!(a.append(format!("a-{seq}").as_bytes()).await.unwrap(), seq);
    }
    // B takes over: reads A's entries, appends two more, snapshots and, past the grace,
    // truncates everything below its snapshot, A's last entry (3) and the one A would
    // claim next (4) included.
    let (mut b, seen) = MetadataLog::open(store.clone(), log_config("meta"), shared.clone()).await.unwrap();
    assert_eq!(seen.entries.len(), 3);
    assert_eq!(b.append(b"b-4").await.unwrap(), 4);
    assert_eq!(b.append(b"b-5").await.unwrap(), 5);
    b.write_snapshot(5, b"state@5").await.unwrap();
    clock.advance_ms(GRACE_MS + 1);
    assert_eq!(b.truncate().await.unwrap(), 4);

    // A wakes up still believing 4 is next. Its conditional create succeeds (4 is gone), but
    // after idling past the lease it checks its predecessor, finds it truncated, and learns it
    // was fenced instead of believing a write nobody reads.
    assert_eq!(a.next_seq(), 4);
    assert_err!(a.append(b"a-zombie").await, Error::Fenced(_));
    assert_err!(a.append(b"a-zombie").await, Error::Fenced(_)); // Until it catches up.
    let history = read_fresh(&store, "meta").await;
    assert_eq!(history.snapshot, Some((5, Bytes::from_static(b"state@5"))));
    assert_eq!(entries(&history), [], "the zombie's write is not part of the history");

    // Catching up restarts A from B's snapshot, not from its own rejected write followed by
    // B's entry 5 (which would skip B's entry 4).
    let caught_up = a.catch_up().await.unwrap();
    assert_eq!(caught_up.snapshot, Some((5, Bytes::from_static(b"state@5"))));
    assert_eq!(entries(&caught_up), [], "A must not replay its own rejected write");
    assert_eq!(a.next_seq(), 6);
    assert_eq!(a.append(b"a-6").await.unwrap(), 6);
    assert_err!(b.append(b"b-6").await, Error::Fenced(_));
    let history = read_fresh(&store, "meta").await;
    assert_eq!(history.snapshot.as_ref().map(|s| s.0), Some(5));
    assert_eq!(entries(&history), [(6, "a-6".into())]);
}

async fn a_torn_entry_is_skipped_and_the_log_goes_on(store: SharedStore) {
    // An empty object, half an entry, and all but its last byte.
    for (i, keep_fraction) in [0.0, 0.5, 1.0].into_iter().enumerate() {
        let prefix = format!("meta-{i}");
        let (_, clock) = manual_clock();
        let faults = Arc::new(FaultInjector::new(store.clone(), 7));
        let (mut crashing, _) = MetadataLog::open(faults.clone(), log_config(&prefix), clock.clone()).await.unwrap();
        crashing.append(b"first").await.unwrap();
        crashing.append(b"second").await.unwrap();
        let torn = FaultRule::new(Fault::TornWrite { keep_fraction }, Trigger::Nth(0)).on(Op::PutIfAbsent);
        faults.add_rule(torn.under(format!("{prefix}/log/")));
        assert!(crashing.append(b"torn payload").await.is_err(), "the writer crashed mid-append");
        assert!(faults.has_crashed());
        assert_eq!(seqs(&store, &prefix, "log").await, [1, 2, 3], "keep {keep_fraction}: the torn entry is stored");

        // The restarted writer reads past the void entry and appends after it.
        let (mut restarted, recovered) = MetadataLog::open(store.clone(), log_config(&prefix), clock).await.unwrap();
        assert_eq!(entries(&recovered), [(1, "first".into()), (2, "second".into())], "keep {keep_fraction}");
        assert_eq!(restarted.next_seq(), 4, "the void entry's sequence is never reused");
        assert_eq!(restarted.append(b"after").await.unwrap(), 4);
        let history = read_fresh(&store, &prefix).await;
        assert_eq!(entries(&history), [(1, "first".into()), (2, "second".into()), (4, "after".into())]);
    }
}

// ---------------------------------------------------------------- catalog

fn kv(key: &str, value: &str) -> CatalogRecord {
    CatalogRecord::KvPut { key: key.into(), value: value.into() }
}

/// An upload of one object holding `(stream, start, end)` runs, committed under `epoch`.
fn upload(id: u64, epoch: u64, ranges: &[(u64, u64, u64)]) -> CatalogRecord {
    let object = DataObject {
        id,
        key: format!("data/{id}"),
        kind: ObjectKind::StreamSet,
        size: 1000,
        index_pos: 900,
        created_ms: START_MS,
        ranges: ranges
            .iter()
            .map(|&(stream_id, start_offset, end_offset)| ObjectRange { stream_id, start_offset, end_offset })
            .collect(),
    };
    let stream_ends = ranges.iter().map(|&(stream_id, _, e)| StreamEnd { stream_id, epoch, end_offset: e }).collect();
    CatalogRecord::CommitObjects { objects: vec![object], stream_ends, compacted: vec![], at_ms: START_MS }
}

/// Streams created, opened, written, trimmed and deleted: eleven log entries.
async fn catalog_workload(catalog: &Catalog) {
    for id in 1..=3 {
        assert_eq!(catalog.create_stream().await.unwrap(), id);
    }
    let opens = (1..=3).map(|stream_id| CatalogRecord::OpenStream { stream_id, epoch: 1, node_id: 7 }).collect();
    catalog.submit(opens).await.unwrap();
    catalog.submit(vec![upload(10, 1, &[(1, 0, 100), (2, 0, 50)])]).await.unwrap();
    catalog.submit(vec![upload(11, 1, &[(1, 100, 150), (3, 0, 10)])]).await.unwrap();
    // Object 10 is released only once neither stream reads it.
    catalog.submit(vec![CatalogRecord::TrimStream { stream_id: 1, start_offset: 120, at_ms: START_MS }]).await.unwrap();
    assert!(catalog.state().objects.contains_key(&10), "stream 2 still reads object 10");
    catalog.submit(vec![CatalogRecord::TrimStream { stream_id: 2, start_offset: 50, at_ms: START_MS }]).await.unwrap();
    assert!(catalog.state().deleting.contains_key(&10));
    catalog.submit(vec![CatalogRecord::ObjectsDeleted { object_ids: vec![10] }]).await.unwrap();
    catalog.submit(vec![kv("topic/orders", "{\"partitions\":2}")]).await.unwrap();
    let seq = catalog.submit(vec![CatalogRecord::DeleteStream { stream_id: 3, at_ms: START_MS }]).await.unwrap();
    assert_eq!(seq, 11);

    let state = catalog.state();
    assert_eq!(state.applied_seq, 11);
    assert_eq!(state.streams.keys().copied().collect::<Vec<_>>(), [1, 2]);
    let s1 = &state.streams[&1];
    assert_eq!((s1.start_offset, s1.end_offset, s1.epoch, s1.owner), (120, 150, 1, Some(7)));
    assert_eq!(s1.ranges, [StreamRange { start_offset: 100, end_offset: 150, object_id: 11 }]);
    assert_eq!(state.objects.keys().copied().collect::<Vec<_>>(), [11], "stream 1 still reads object 11");
    assert!(state.deleting.is_empty());
}

async fn a_reopened_catalog_has_the_same_state(store: SharedStore) {
    // Replaying the whole log.
    let (clock, shared) = manual_clock();
    let catalog = Catalog::open(store.clone(), catalog_config(1000), shared.clone()).await.unwrap();
    catalog_workload(&catalog).await;
    assert_eq!(seqs(&store, "meta", "snapshot").await, Vec::<u64>::new());
    let reopened = Catalog::open(store.clone(), catalog_config(1000), shared.clone()).await.unwrap();
    assert_eq!(*reopened.state(), *catalog.state());

    // Through a snapshot every three entries, on a second log in the same bucket.
    let config = CatalogConfig { log: log_config("meta-snapshotted"), snapshot_every: 3, ..CatalogConfig::default() };
    let catalog = Catalog::open(store.clone(), config.clone(), shared.clone()).await.unwrap();
    catalog_workload(&catalog).await;
    assert_eq!(seqs(&store, "meta-snapshotted", "snapshot").await, [3, 6, 9]);
    let reopened = Catalog::open(store.clone(), config.clone(), shared.clone()).await.unwrap();
    assert_eq!(*reopened.state(), *catalog.state());
    drop(reopened);

    // Past the grace, the next snapshot (at 12) truncates the log below the one at 9.
    clock.advance_ms(GRACE_MS + 1);
    for i in 0..3 {
        catalog.submit(vec![kv(&format!("late-{i}"), "x")]).await.unwrap();
    }
    assert_eq!(seqs(&store, "meta-snapshotted", "snapshot").await, [9, 12]);
    assert_eq!(seqs(&store, "meta-snapshotted", "log").await, (9..=14).collect::<Vec<_>>());
    let reopened = Catalog::open(store, config, shared).await.unwrap();
    assert_eq!(*reopened.state(), *catalog.state());
    assert_eq!(reopened.state().applied_seq, 14);
}

async fn concurrent_submissions_are_group_committed(store: SharedStore) {
    const SUBMITTERS: usize = 24;
    let (store, metrics) = counted(slow_creates(store));
    let (_, clock) = manual_clock();
    let catalog = Catalog::open(store.clone(), catalog_config(1000), clock.clone()).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(SUBMITTERS));
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (catalog, start) = (catalog.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                catalog.submit(vec![kv(&format!("key-{t}"), &t.to_string())]).await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        seqs.push(task.await.unwrap().unwrap_or_else(|e| panic!("submission {t} failed: {e}")));
    }
    let log_entries = metrics.request_count("put_if_absent");
    assert!(log_entries < SUBMITTERS as u64, "{SUBMITTERS} submissions took {log_entries} log entries: no grouping");
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=log_entries).collect::<Vec<_>>(), "every entry answers at least one submission");
    let state = catalog.state();
    assert_eq!(state.applied_seq, log_entries);
    assert_eq!(state.kv.len(), SUBMITTERS);
    assert!((0..SUBMITTERS).all(|t| *state.kv[&format!("key-{t}")] == t.to_string()));
    let reopened = Catalog::open(store, catalog_config(1000), clock).await.unwrap();
    assert_eq!(*reopened.state(), *state);
}

async fn a_rejected_submission_leaves_the_rest_of_its_group_committed(store: SharedStore) {
    let (store, metrics) = counted(slow_creates(store));
    let (_, clock) = manual_clock();
    let catalog = Catalog::open(store.clone(), catalog_config(1000), clock.clone()).await.unwrap();
    assert_eq!(catalog.create_stream().await.unwrap(), 1);
    catalog.submit(vec![CatalogRecord::OpenStream { stream_id: 1, epoch: 1, node_id: 7 }]).await.unwrap();
    // Node 8 takes the stream over: node 7's epoch 1 is stale from here on.
    let before = catalog.submit(vec![CatalogRecord::OpenStream { stream_id: 1, epoch: 2, node_id: 8 }]).await.unwrap();
    let stale_upload = upload(20, 1, &[(1, 0, 10)]);
    let submissions = vec![
        vec![kv("first", "1")], // Commits alone; everything after it queues behind its append.
        vec![kv("a", "1")],
        vec![stale_upload.clone()],
        vec![kv("b", "1")],
        vec![kv("atomic", "1"), stale_upload], // All or nothing.
        vec![CatalogRecord::OpenStream { stream_id: 1, epoch: 1, node_id: 7 }],
        vec![kv("c", "1")],
    ];
    // Polled in order by one task: the first submission's append is in flight (delayed) when
    // the others are queued, so they form one group.
    let appends_before = metrics.request_count("put_if_absent");
    let results = futures::future::join_all(submissions.into_iter().map(|records| catalog.submit(records))).await;
    // However the submissions were grouped (one entry per group), the rejected ones take
    // nothing from the accepted ones queued beside them.
    let entries = metrics.request_count("put_if_absent") - appends_before;
    assert!((1..=2).contains(&entries), "{entries} log entries for one or two groups");
    let seqs: Vec<u64> =
        [0, 1, 3, 6].iter().map(|&i| *results[i].as_ref().unwrap_or_else(|e| panic!("submission {i}: {e}"))).collect();
    assert!(
        seqs.iter().all(|s| (before + 1..=before + entries).contains(s)),
        "accepted submissions landed in {seqs:?}"
    );
    assert_eq!(
        seqs[1..].iter().collect::<std::collections::BTreeSet<_>>().len(),
        1,
        "submissions 1, 3 and 6 were queued together"
    );
    for rejected in [2, 4, 5] {
        assert_err!(&results[rejected], Error::StaleEpoch { stream_id: 1, epoch: 1, current: 2 });
    }
    let state = catalog.state();
    assert_eq!(state.kv.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "c", "first"]);
    let stream = &state.streams[&1];
    assert_eq!((stream.epoch, stream.owner, stream.end_offset), (2, Some(8), 0), "no rejected record was applied");
    assert!(state.objects.is_empty());
    let reopened = Catalog::open(store, catalog_config(1000), clock).await.unwrap();
    assert_eq!(*reopened.state(), *state);
}

async fn a_fenced_catalog_catches_up_and_applies_its_submission_once(store: SharedStore) {
    let (_, clock) = manual_clock();
    let a = Catalog::open(store.clone(), catalog_config(1000), clock.clone()).await.unwrap();
    let b = Catalog::open(store.clone(), catalog_config(1000), clock.clone()).await.unwrap();
    assert_eq!(a.submit(vec![kv("owner", "a")]).await.unwrap(), 1);

    // B never read A's entry: its append loses sequence 1, it reads the log and retries on
    // top of A's entry (the records are checked against the state A left).
    assert_eq!(b.submit(vec![kv("owner", "b")]).await.unwrap(), 2);
    assert_eq!(&*b.state().kv["owner"], "b");
    assert_eq!(b.state().applied_seq, 2);
    // A precondition computed from what B saw before catching up is refused, not retried.
    let stale =
        CatalogRecord::KvExpect { key: "owner".into(), digest: Some(automq_storage::metadata::state::kv_digest("a")) };
    assert_err!(a.submit(vec![stale.clone(), kv("owner", "a again")]).await, Error::PreconditionFailed(_));
    assert_eq!(&*a.state().kv["owner"], "b", "A caught up while retrying");
    let fresh = Catalog::open(store, catalog_config(1000), clock).await.unwrap();
    assert_eq!(&*fresh.state().kv["owner"], "b");
    assert_eq!(*fresh.state(), *b.state());
    assert_eq!(fresh.state().applied_seq, 2, "each submission landed once");
}

async fn refresh_follows_another_writer_and_recovers_from_fencing(store: SharedStore) {
    let (manual, clock) = manual_clock();
    let (counted_store, metrics) = counted(store.clone());
    let a = Catalog::open(store.clone(), catalog_config(3), clock.clone()).await.unwrap();
    let b = Catalog::open(counted_store, catalog_config(1000), clock.clone()).await.unwrap();
    assert!(!b.refresh().await.unwrap(), "nothing new yet");
    let total = |m: &ObjectStoreMetrics| {
        ["get", "get_range", "put", "put_if_absent", "head", "delete", "list"]
            .iter()
            .map(|op| m.request_count(op))
            .sum::<u64>()
    };
    let (before, heads) = (total(&metrics), metrics.request_count("head"));
    assert!(!b.refresh().await.unwrap());
    assert_eq!(
        (total(&metrics) - before, metrics.request_count("head") - heads),
        (1, 1),
        "an idle refresh is one HEAD"
    );

    a.submit(vec![kv("x", "1")]).await.unwrap();
    a.submit(vec![kv("y", "2")]).await.unwrap();
    assert!(b.refresh().await.unwrap());
    assert_eq!(*b.state(), *a.state());

    // B writes on top of what it follows; A, now behind, is fenced, catches up and goes on.
    assert_eq!(b.submit(vec![kv("x", "b")]).await.unwrap(), 3);
    assert_eq!(a.submit(vec![kv("z", "a")]).await.unwrap(), 4);
    assert_eq!(&*a.state().kv["x"], "b");
    // A snapshots every 3 entries; idle past the lease, B still converges (from the snapshot).
    for i in 0..6 {
        a.submit(vec![kv("n", &i.to_string())]).await.unwrap();
    }
    manual.advance_ms(GRACE_MS + LEASE_MS);
    a.submit(vec![kv("n", "last")]).await.unwrap();
    assert!(b.refresh().await.unwrap());
    assert_eq!(*b.state(), *a.state());
    let fresh = Catalog::open(store, catalog_config(1000), clock).await.unwrap();
    assert_eq!(*fresh.state(), *a.state());
}

/// A damaged newest snapshot with the log below it truncated must stop the open, not yield an
/// empty (wrong) state.
#[tokio::test]
async fn an_unreadable_only_snapshot_refuses_to_open() {
    use automq_storage::metadata::{MetadataLog, MetadataLogConfig};
    let store: SharedStore = Arc::new(automq_storage::object_store::MemoryStore::new());
    let (_, clock) = manual_clock();
    let (mut log, _) = MetadataLog::open(store.clone(), MetadataLogConfig::default(), clock.clone()).await.unwrap();
    for i in 0..3u8 {
        log.append(&[i]).await.unwrap();
    }
    log.write_snapshot(3, b"state").await.unwrap();
    for seq in 1..3 {
        store.delete(&format!("meta/log/{seq:020}")).await.unwrap();
    }
    store.put("meta/snapshot/00000000000000000003", Bytes::from_static(b"garbage")).await.unwrap();
    let err = MetadataLog::open(store, MetadataLogConfig::default(), clock).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}
