//! A peer takes over a dead node's S3 WAL: everything the dead node acknowledged and never
//! uploaded is committed, the streams open on the peer with every record, and the dead node
//! (really only paused) can never acknowledge another append.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use automq_storage::clock::{self, SharedClock};
use automq_storage::metadata::{Catalog, CatalogConfig};
use automq_storage::object_store::{MemoryStore, SharedStore};
use automq_storage::stream::{StreamEngine, StreamEngineConfig, StreamMetrics};
use automq_storage::wal::{S3Wal, S3WalConfig};
use bytes::Bytes;

fn wal_config(node: u64) -> S3WalConfig {
    S3WalConfig { max_batch_delay: Duration::from_millis(1), ..S3WalConfig::new(node) }
}

async fn node(store: &SharedStore, id: u64, clock: &SharedClock) -> (StreamEngine, u64) {
    let catalog = Catalog::open(store.clone(), CatalogConfig::default(), clock.clone()).await.unwrap();
    let (wal, recovered) = S3Wal::open(store.clone(), wal_config(id), clock.clone()).await.unwrap();
    let epoch = wal.epoch();
    // Nothing is uploaded on its own: acknowledged data stays in the WAL only.
    let config = StreamEngineConfig {
        upload_interval: Duration::from_secs(3600),
        upload_bytes: 1 << 30,
        compaction_interval: None,
        gc_interval: None,
        ..StreamEngineConfig::new(id)
    };
    let engine = StreamEngine::open(
        config,
        store.clone(),
        Arc::new(wal),
        recovered,
        catalog,
        clock.clone(),
        StreamMetrics::new(None),
    )
    .await
    .unwrap();
    (engine, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_adopts_what_a_dead_node_acknowledged_and_fences_it() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let clock = clock::system();
    let (dead, dead_epoch) = node(&store, 1, &clock).await;
    let stream = dead.create_stream().await.unwrap();
    let other = dead.create_stream().await.unwrap();
    dead.open_stream(stream).await.unwrap();
    let mut offset = 0;
    for i in 0..50u64 {
        dead.append(stream, offset, offset + 2, Bytes::from(format!("batch {i}"))).await.unwrap();
        offset += 2;
    }
    // Half of it uploaded before the crash, half only in the WAL.
    dead.flush().await.unwrap();
    for i in 50..100u64 {
        dead.append(stream, offset, offset + 2, Bytes::from(format!("batch {i}"))).await.unwrap();
        offset += 2;
    }
    assert_eq!(dead.catalog().state().streams[&stream].end_offset, 100, "only the first half is committed");

    let (peer, _) = node(&store, 2, &clock).await;
    let adopted = peer.adopt_wal(&wal_config(1), dead_epoch).await.unwrap();
    assert_eq!(adopted, 50, "the records past the committed end");
    assert_eq!(peer.catalog().state().streams[&stream].end_offset, 200);

    // The paused node wakes up: its WAL is fenced, so it acknowledges nothing more.
    let late = dead.append(stream, offset, offset + 2, Bytes::from_static(b"late")).await;
    assert!(late.is_err(), "a fenced node acknowledged an append: {late:?}");

    let info = peer.open_stream(stream).await.unwrap();
    assert_eq!((info.start_offset, info.end_offset), (0, 200));
    let mut at = 0;
    let mut seen = 0u64;
    while at < 200 {
        let r = peer.fetch(stream, at, 1 << 20).await.unwrap();
        for b in r.batches {
            assert_eq!(b.payload, Bytes::from(format!("batch {seen}")), "at offset {}", b.base_offset);
            seen += 1;
            at = b.end_offset;
        }
    }
    assert_eq!(seen, 100);
    peer.append(stream, 200, 201, Bytes::from_static(b"after")).await.unwrap();
    assert!(peer.catalog().state().streams.contains_key(&other));
    let leftovers: Vec<String> =
        store.list("wal/1/").await.unwrap().into_iter().map(|m| m.key).filter(|k| !k.ends_with("/start")).collect();
    assert_eq!(leftovers.len(), 1, "only the fence of the dead epoch stays: {leftovers:?}");
}
