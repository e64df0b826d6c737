//! A catalog following another one (a broker that is not the controller): submissions are
//! forwarded and answered once the follower holds them, retries after ambiguous failures
//! apply once, a follower far behind gets the whole state, and a follower takes over writing
//! from the bucket when its writer is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use automq_storage::clock;
use automq_storage::metadata::catalog::{Feed, LogWriter};
use automq_storage::metadata::{Catalog, CatalogConfig, CatalogRecord};
use automq_storage::object_store::{MemoryStore, SharedStore};
use automq_storage::{Error, Result};

/// Forwards in process; after delivering, fails the first `lose_answers` answers (the writer
/// applied the submission, the follower does not hear it).
#[derive(Debug)]
struct InProcess {
    writer: Arc<Catalog>,
    lose_answers: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl LogWriter for InProcess {
    async fn forward(&self, records: &[CatalogRecord]) -> Result<u64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let seq = self.writer.accept_forwarded(records.to_vec()).await?;
        if self.lose_answers.load(Ordering::SeqCst) > 0 {
            self.lose_answers.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Unavailable("the answer was lost".into()));
        }
        Ok(seq)
    }
}

fn config() -> CatalogConfig {
    CatalogConfig { feed_entries: 8, forward_timeout: Duration::from_secs(10), ..CatalogConfig::default() }
}

/// Keeps `follower` applying what `writer` commits, as the broker's replication task does.
fn replicate(writer: Arc<Catalog>, follower: Arc<Catalog>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match writer.feed(follower.state().applied_seq, Duration::from_millis(200)).await {
                Ok(Feed::Entries(entries)) => follower.apply_entries(entries).unwrap(),
                Ok(Feed::State(json)) => follower.apply_state(&json).unwrap(),
                Err(_) => return,
            }
        }
    })
}

async fn pair() -> (SharedStore, Arc<Catalog>, Arc<Catalog>, Arc<InProcess>) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let writer = Catalog::open(store.clone(), config(), clock::system()).await.unwrap();
    let follower = Catalog::open(store.clone(), config(), clock::system()).await.unwrap();
    let link =
        Arc::new(InProcess { writer: writer.clone(), lose_answers: AtomicUsize::new(0), calls: AtomicUsize::new(0) });
    follower.follow(link.clone());
    (store, writer, follower, link)
}

fn put(key: &str, value: &str) -> CatalogRecord {
    CatalogRecord::KvPut { key: key.into(), value: value.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_and_reads_its_own_writes() {
    let (_store, writer, follower, _) = pair().await;
    let feed = replicate(writer.clone(), follower.clone());
    let id = follower.create_stream().await.unwrap();
    assert!(follower.state().streams.contains_key(&id), "answered only once the follower holds it");
    follower.submit(vec![put("topic/a", "1")]).await.unwrap();
    assert_eq!(&*follower.state().kv["topic/a"], "1");
    assert_eq!(&*writer.state().kv["topic/a"], "1");
    writer.submit(vec![put("topic/b", "2")]).await.unwrap();
    let mut changes = follower.watch();
    changes.wait_for(|seq| *seq >= writer.state().applied_seq).await.unwrap();
    assert_eq!(*follower.state(), *writer.state(), "the follower converges on the writer's state");
    assert!(follower.refresh().await.is_ok_and(|changed| !changed), "a follower does not read the bucket");
    feed.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submission_applies_once() {
    let (_store, writer, follower, link) = pair().await;
    let feed = replicate(writer.clone(), follower.clone());
    link.lose_answers.store(2, Ordering::SeqCst);
    // Creating stream 1 twice would fail the second time ("not the next id").
    let id = follower.create_stream().await.unwrap();
    assert_eq!(id, 1);
    assert_eq!(link.calls.load(Ordering::SeqCst), 3, "two lost answers, then the duplicate is recognised");
    assert_eq!(writer.state().next_stream_id, 2, "applied once");
    assert_eq!(writer.state().applied_seq, 1);
    feed.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_definitive_and_a_far_behind_follower_gets_the_state() {
    let (_store, writer, follower, link) = pair().await;
    match follower.submit(vec![CatalogRecord::CloseStream { stream_id: 9, epoch: 1 }]).await {
        Err(Error::StreamNotFound(9)) => {}
        other => panic!("expected the writer's refusal, got {other:?}"),
    }
    assert_eq!(link.calls.load(Ordering::SeqCst), 1, "not retried");
    for i in 0..20 {
        writer.submit(vec![put(&format!("k{i}"), "v")]).await.unwrap();
    }
    match writer.feed(0, Duration::ZERO).await.unwrap() {
        Feed::State(json) => follower.apply_state(&json).unwrap(),
        Feed::Entries(e) => panic!("20 entries exceed the 8 kept, yet got {} entries", e.len()),
    }
    assert_eq!(*follower.state(), *writer.state());
    match writer.feed(follower.state().applied_seq - 3, Duration::ZERO).await.unwrap() {
        Feed::Entries(e) => assert_eq!(e.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [18, 19, 20]),
        Feed::State(_) => panic!("a recent position gets entries"),
    }
    assert!(follower.feed(0, Duration::ZERO).await.is_err(), "only the writer feeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_writing_and_the_old_writer_is_fenced() {
    let (store, writer, follower, _) = pair().await;
    let feed = replicate(writer.clone(), follower.clone());
    follower.submit(vec![put("a", "1")]).await.unwrap();
    feed.abort();
    // The writer goes on without the follower hearing of it, then the follower takes over.
    writer.submit(vec![put("b", "2")]).await.unwrap();
    follower.become_writer().await.unwrap();
    assert_eq!(follower.state().kv.get("b").map(|v| &**v), Some("2"), "read what it missed from the bucket");
    follower.submit(vec![put("c", "3")]).await.unwrap();
    // The old writer's next append is fenced; it catches up before its submission lands.
    writer.submit(vec![put("d", "4")]).await.unwrap();
    assert_eq!(writer.state().kv.get("c").map(|v| &**v), Some("3"));
    follower.refresh().await.unwrap();
    let reopened = Catalog::open(store, config(), clock::system()).await.unwrap();
    assert_eq!(reopened.state().kv, follower.state().kv, "one history in the bucket");
    assert_eq!(reopened.state().kv.len(), 4);
}
