//! An idempotent producer's retry of a batch the log already holds is answered with the
//! original offset, but never before the original is durable: otherwise a retry could be
//! acknowledged for a write a crash still loses (and the producer, finding the log short of an
//! acknowledged sequence, fails with OUT_OF_ORDER_SEQUENCE_NUMBER).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use automq_broker::partition::Partition;
use automq_broker::topics::TopicConfig;
use automq_storage::clock;
use automq_storage::metadata::{Catalog, CatalogConfig};
use automq_storage::object_store::{Fault, FaultInjector, FaultRule, MemoryStore, Op, SharedStore, Trigger};
use automq_storage::stream::{StreamEngine, StreamEngineConfig, StreamMetrics};
use automq_storage::wal::{S3Wal, S3WalConfig};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// One batch of an idempotent producer: id 7, epoch 0, sequences 0..n.
fn idempotent_batch(n: i32) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    buf.freeze()
}

#[tokio::test]
async fn a_retried_batch_is_acknowledged_only_once_its_original_is_durable() {
    let faults = Arc::new(FaultInjector::new(Arc::new(MemoryStore::new()), 1));
    let store: SharedStore = faults.clone();
    let clock = clock::system();
    let catalog = Catalog::open(store.clone(), CatalogConfig::default(), clock.clone()).await.unwrap();
    let config = S3WalConfig { max_batch_delay: Duration::from_millis(1), ..S3WalConfig::new(1) };
    let (wal, recovered) = S3Wal::open(store.clone(), config, clock.clone()).await.unwrap();
    let engine = StreamEngine::open(
        StreamEngineConfig::new(1),
        store,
        Arc::new(wal),
        recovered,
        catalog,
        clock,
        StreamMetrics::new(None),
    )
    .await
    .unwrap();
    let stream = engine.create_stream().await.unwrap();
    let partition = Partition::open(&engine, "t", 0, stream).await.unwrap();
    let topic = TopicConfig::default();
    // From here the WAL's object (a conditional create) takes 1.5 s to land.
    faults.add_rule(FaultRule::new(Fault::Latency(Duration::from_millis(1500)), Trigger::Always).on(Op::PutIfAbsent));

    let batch = idempotent_batch(3);
    let original = partition.enqueue(&engine, batch.clone(), &topic, 0).unwrap();
    let retry = partition.enqueue(&engine, batch, &topic, 0).unwrap();
    let mut retry = Box::pin(retry.durable(&partition, &engine));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut retry).await.is_err(),
        "the retry was acknowledged while the original was still on its way to the WAL"
    );
    let first = original.durable(&partition, &engine).await.unwrap();
    let again = retry.await.unwrap();
    assert_eq!((first.base_offset, again.base_offset), (0, 0), "the retry gets the original's offset");
    let (high_watermark, _) = partition.offsets(&engine).await.unwrap();
    assert_eq!(high_watermark, 3, "appended once");
}
