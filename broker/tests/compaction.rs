//! Log compaction keeps the newest record per key at its original offset, keeps tombstones
//! until delete.retention.ms, refuses keyless records, and survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap};

use automq_broker::broker::now_ms;
use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;
use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use kafka_protocol::ResponseError;

fn batch(records: &[(Option<&str>, Option<&str>)], compression: Compression) -> Bytes {
    let plain: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.map(|k| Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string()))))
        .collect();
    automq_broker::batch::encode_plain(&plain, now_ms(), compression).unwrap()
}

/// Every record of the partition: offset -> (key, value).
async fn read_all(running: &RunningBroker, topic: &str) -> BTreeMap<i64, (Option<Bytes>, Option<Bytes>)> {
    let (_, p) = running.broker.partition(topic, 0).unwrap();
    let (hw, start) = p.offsets(&running.broker.engine).await.unwrap();
    let mut out = BTreeMap::new();
    let mut at = start;
    while at < hw {
        let read = p.read(&running.broker.engine, at, 1 << 20).await.unwrap();
        let mut buf = read.records.clone();
        let mut progressed = false;
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            for r in set.records {
                if r.offset >= at {
                    out.insert(r.offset, (r.key, r.value));
                    at = r.offset + 1;
                    progressed = true;
                }
            }
        }
        if !progressed {
            // The rest of the range is a gap left by compaction.
            let next = running.broker.engine.fetch(p.stream_id, at as u64, 1).await.unwrap();
            at = next.batches.first().map(|b| b.base_offset as i64).unwrap_or(hw).max(at + 1);
        }
    }
    out
}

/// A broker in `dir` with a compacted one-partition topic `name` (no compaction lag), led.
async fn compacted_topic(
    dir: &tempfile::TempDir,
    name: &str,
) -> (
    BrokerConfig,
    RunningBroker,
    std::sync::Arc<automq_broker::broker::Topic>,
    std::sync::Arc<automq_broker::partition::Partition>,
) {
    let any = "127.0.0.1:0".parse().unwrap();
    let config = BrokerConfig::embedded(dir.path(), any, any);
    let running = RunningBroker::start(config.clone()).await.unwrap();
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("min.compaction.lag.ms".to_string(), "0".to_string()),
    ]);
    let topic = running.broker.create_topic(name, 1, configs, false).await.unwrap();
    let p = running.broker.wait_led(name, 0, std::time::Duration::from_secs(10)).await.unwrap();
    (config, running, topic, p)
}

#[tokio::test]
async fn compaction_keeps_the_newest_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, topic, p) = compacted_topic(&dir, "profiles").await;
    let engine = &running.broker.engine;
    let keyless = p.append(engine, batch(&[(None, Some("x"))], Compression::None), &topic.config, now_ms()).await;
    assert_eq!(keyless.unwrap_err().code(), ResponseError::InvalidRecord, "compacted topics need keys");
    let mut newest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for round in 0..3 {
        for codec in [Compression::None, Compression::Lz4] {
            let records: Vec<(String, String)> =
                (0..5).map(|k| (format!("k{k}"), format!("r{round}-{codec:?}"))).collect();
            let refs: Vec<(Option<&str>, Option<&str>)> =
                records.iter().map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))).collect();
            let o = p.append(engine, batch(&refs, codec), &topic.config, now_ms()).await.unwrap();
            for (i, (k, v)) in records.iter().enumerate() {
                newest.insert(k.clone(), (o.base_offset + i as i64, Some(v.clone())));
            }
        }
    }
    // A tombstone for k3: it stays (delete.retention.ms is a day by default).
    let o = p.append(engine, batch(&[(Some("k3"), None)], Compression::None), &topic.config, now_ms()).await.unwrap();
    newest.insert("k3".into(), (o.base_offset, None));
    engine.flush().await.unwrap();
    let before = read_all(&running, "profiles").await;
    assert_eq!(before.len(), 31);

    let stats = automq_broker::cleaner::compact_partition(engine, &p, &topic.config, now_ms())
        .await
        .unwrap()
        .expect("a pass ran");
    assert_eq!(stats.records_kept, 5, "one record per key survives: {stats:?}");
    let expect: BTreeMap<i64, (Option<Bytes>, Option<Bytes>)> = newest
        .iter()
        .map(|(k, (offset, v))| (*offset, (Some(Bytes::from(k.clone())), v.clone().map(Bytes::from))))
        .collect();
    assert_eq!(read_all(&running, "profiles").await, expect, "the newest record of every key, at its original offset");

    // Appends continue after the compacted prefix; a second pass with nothing new is a no-op.
    let o = p
        .append(engine, batch(&[(Some("k1"), Some("late"))], Compression::None), &topic.config, now_ms())
        .await
        .unwrap();
    assert_eq!(o.base_offset, 31, "offsets never move back");
    assert!(automq_broker::cleaner::compact_partition(engine, &p, &topic.config, now_ms()).await.unwrap().is_none());
    running.shutdown().await.unwrap();

    let running = RunningBroker::start(config).await.unwrap();
    let after = read_all(&running, "profiles").await;
    assert_eq!(after.len(), 6, "the compacted log and the late record survive a restart: {after:?}");
    assert_eq!(after.get(&31).and_then(|r| r.1.clone()), Some(Bytes::from("late")));
    running.shutdown().await.unwrap();
}

/// Every record of the partition: (offset, key, control).
async fn offsets_and_keys(running: &RunningBroker, topic: &str) -> Vec<(i64, Option<Bytes>, bool)> {
    let (_, p) = running.broker.partition(topic, 0).unwrap();
    let (hw, start) = p.offsets(&running.broker.engine).await.unwrap();
    let read = running.broker.engine.fetch(p.stream_id, start as u64, 1 << 20).await.unwrap();
    let mut out = Vec::new();
    for b in read.batches {
        let mut buf = b.payload.clone();
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            out.extend(set.records.into_iter().map(|r| (r.offset, r.key, r.control)));
        }
    }
    assert!(out.last().is_none_or(|r| r.0 < hw));
    out
}

#[tokio::test]
async fn compaction_respects_transactions() {
    use automq_broker::batch::{encode_for, Marker};
    let dir = tempfile::tempdir().unwrap();
    let (config, running, topic, p) = compacted_topic(&dir, "changelog").await;
    let engine = &running.broker.engine;
    let txn = |pid: i64, key: &str, value: &str| {
        let records = [(Some(Bytes::from(key.to_string())), Some(Bytes::from(value.to_string())))];
        encode_for(&records, now_ms(), Compression::None, Some((pid, 0))).unwrap()
    };
    let marker = |pid: i64, commit: bool| Marker { producer_id: pid, producer_epoch: 0, commit, coordinator_epoch: 0 };
    let cfg = &topic.config;
    p.append(engine, batch(&[(Some("k1"), Some("a"))], Compression::None), cfg, now_ms()).await.unwrap(); // 0
    p.append(engine, txn(101, "k1", "b"), cfg, now_ms()).await.unwrap(); // 1: committed below
    p.write_marker(engine, &marker(101, true), now_ms()).await.unwrap(); // 2
    p.append(engine, txn(102, "k2", "x"), cfg, now_ms()).await.unwrap(); // 3: aborted below
    p.write_marker(engine, &marker(102, false), now_ms()).await.unwrap(); // 4
    p.append(engine, batch(&[(Some("k2"), Some("p"))], Compression::None), cfg, now_ms()).await.unwrap(); // 5
    engine.flush().await.unwrap(); // (compaction rewrites whole uploaded ranges: one ends here)
    p.append(engine, txn(103, "k1", "open"), cfg, now_ms()).await.unwrap(); // 6: still open
    p.append(engine, batch(&[(Some("k3"), Some("q"))], Compression::None), cfg, now_ms()).await.unwrap(); // 7
    assert_eq!(p.last_stable_offset(8), 6);
    engine.flush().await.unwrap();

    let stats =
        automq_broker::cleaner::compact_partition(engine, &p, cfg, now_ms()).await.unwrap().expect("a pass ran");
    assert!(stats.cleaned_upto <= 6, "cleaning stops at the last stable offset: {stats:?}");
    let keys = |v: &[(i64, Option<Bytes>, bool)]| -> Vec<(i64, bool)> { v.iter().map(|(o, _, c)| (*o, *c)).collect() };
    let after = offsets_and_keys(&running, "changelog").await;
    // k1@0 is superseded by the committed k1@1; the aborted k2@3 is gone; markers stay; the
    // open transaction and what follows are untouched.
    assert_eq!(keys(&after), vec![(1, false), (2, true), (4, true), (5, false), (6, false), (7, false)], "{after:?}");
    running.shutdown().await.unwrap();

    // Reopened, the partition still knows producer 103's transaction is open.
    let running = RunningBroker::start(config).await.unwrap();
    let p = running.broker.wait_led("changelog", 0, std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(p.last_stable_offset(8), 6);
    assert_eq!(p.open_transactions(), vec![(103, 6)]);
    running.shutdown().await.unwrap();
}
