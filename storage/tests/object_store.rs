//! The `ObjectStore` contract, checked against every backend, plus its decorators.
//!
//! Each conformance body takes a fresh, empty `SharedStore` and is stamped out once per
//! backend by `conformance!`, as `memory::<body>`, `file::<body>` and `s3::<body>`. The S3
//! bodies run against a real SeaweedFS started by `automq_storage::testing`; they never skip.
//! Decorator tests (retry, metrics, fault injection) run over the in-memory backend.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test, with its location.

use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::object_store::{
    open_backend, Fault, FaultInjector, FaultRule, MemoryStore, MetricsStore, ObjectMeta, ObjectStore,
    ObjectStoreMetrics, Op, RetryConfig, RetryStore, S3Credentials, S3Store, SharedStore, StoreOptions, Trigger,
};
use automq_storage::testing::{s3_config, s3_store, unique_prefix, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use automq_storage::Error;
use bytes::Bytes;

/// Asserts that `$result` is an `Err` matching `$pattern` (and the optional guard).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern $(if $guard)?)),
        }
    };
}

automq_storage::store_tests!(
    put_get_roundtrip,
    put_overwrites,
    get_of_missing_key_is_not_found,
    put_if_absent_creates_only_once,
    concurrent_put_if_absent_has_one_winner,
    get_range_is_cut_at_the_end,
    head_reports_size_or_none,
    delete_removes_and_is_idempotent,
    list_filters_by_prefix_in_byte_order,
    invalid_keys_are_rejected,
);

fn data(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn keys(store: &SharedStore, prefix: &str) -> Vec<String> {
    store.list(prefix).await.unwrap().into_iter().map(|m| m.key).collect()
}

// ---------------------------------------------------------------- conformance bodies

async fn put_get_roundtrip(store: SharedStore) {
    // Not a multiple of any buffer size, and no repeating pattern at a power of two.
    let large: Bytes = (0..5 * 1024 * 1024 + 7u32).map(|i| (i % 251) as u8).collect();
    for (key, bytes) in [("small", data("hello")), ("empty", Bytes::new()), ("nested/dir/large", large)] {
        store.put(key, bytes.clone()).await.unwrap();
        let got = store.get(key).await.unwrap();
        assert!(got == bytes, "{key}: read {} bytes back, wrote {}", got.len(), bytes.len());
    }
}

async fn put_overwrites(store: SharedStore) {
    store.put("k", data("the first, longer version")).await.unwrap();
    store.put("k", data("v2")).await.unwrap();
    // Shorter second version: a backend that wrote in place without truncating would fail here.
    assert_eq!(store.get("k").await.unwrap(), data("v2"));
    assert_eq!(store.head("k").await.unwrap().map(|m| m.size), Some(2));
    assert_eq!(keys(&store, "").await, ["k"]);
}

async fn get_of_missing_key_is_not_found(store: SharedStore) {
    assert_err!(store.get("absent").await, Error::NotFound { ref key } if key == "absent");
    assert_err!(store.get_range("absent", 0..10).await, Error::NotFound { ref key } if key == "absent");
    // Keys above and below an object (a directory, or a path through a file, in the file
    // backend) are absent too.
    store.put("parent/child", data("x")).await.unwrap();
    for absent in ["parent", "parent/child/grandchild"] {
        assert_err!(store.get(absent).await, Error::NotFound { ref key } if key == absent);
        assert_err!(store.get_range(absent, 0..10).await, Error::NotFound { ref key } if key == absent);
        assert_eq!(store.head(absent).await.unwrap(), None, "head({absent:?})");
        store.delete(absent).await.unwrap();
    }
    assert_eq!(store.get("parent/child").await.unwrap(), data("x"), "deleting absent keys removed nothing");
}

async fn put_if_absent_creates_only_once(store: SharedStore) {
    store.put_if_absent("claim", data("first")).await.unwrap();
    assert_err!(store.put_if_absent("claim", data("second")).await, Error::AlreadyExists { ref key } if key == "claim");
    assert_err!(store.put_if_absent("claim", data("first")).await, Error::AlreadyExists { .. });
    assert_eq!(store.get("claim").await.unwrap(), data("first"), "a losing create must not touch the object");
    // Once deleted, the key can be claimed again.
    store.delete("claim").await.unwrap();
    store.put_if_absent("claim", data("third")).await.unwrap();
    assert_eq!(store.get("claim").await.unwrap(), data("third"));
}

async fn concurrent_put_if_absent_has_one_winner(store: SharedStore) {
    const WRITERS: usize = 8;
    for round in 0..3 {
        let key = format!("race/{round}");
        let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, start, key) = (store.clone(), start.clone(), key.clone());
                tokio::spawn(async move {
                    let payload = data(&format!("writer {writer} of round {round}"));
                    start.wait().await;
                    (payload.clone(), store.put_if_absent(&key, payload).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (payload, Ok(())) => winners.push(payload),
                (_, Err(Error::AlreadyExists { .. })) => {}
                (_, Err(e)) => panic!("{key}: a racing create failed with {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{key}: winners {winners:?}");
        assert_eq!(store.get(&key).await.unwrap(), winners[0], "{key}: the stored bytes are not the winner's");
    }
}

async fn get_range_is_cut_at_the_end(store: SharedStore) {
    store.put("r", data("0123456789")).await.unwrap();
    assert_eq!(store.get_range("r", 2..5).await.unwrap(), data("234"));
    assert_eq!(store.get_range("r", 0..10).await.unwrap(), data("0123456789"));
    assert_eq!(store.get_range("r", 8..20).await.unwrap(), data("89"));
    assert_eq!(store.get_range("r", 9..10).await.unwrap(), data("9"));
    assert_eq!(store.get_range("r", 10..20).await.unwrap(), Bytes::new());
    assert_eq!(store.get_range("r", 15..20).await.unwrap(), Bytes::new());
    assert_eq!(store.get_range("r", 4..4).await.unwrap(), Bytes::new());
}

async fn head_reports_size_or_none(store: SharedStore) {
    store.put("h/object", data("abc")).await.unwrap();
    store.put("h/empty", Bytes::new()).await.unwrap();
    assert_eq!(store.head("h/object").await.unwrap(), Some(ObjectMeta { key: "h/object".into(), size: 3 }));
    assert_eq!(store.head("h/empty").await.unwrap(), Some(ObjectMeta { key: "h/empty".into(), size: 0 }));
    assert_eq!(store.head("h/absent").await.unwrap(), None);
}

async fn delete_removes_and_is_idempotent(store: SharedStore) {
    store.put("d/gone", data("x")).await.unwrap();
    store.put("d/kept", data("y")).await.unwrap();
    store.delete("d/gone").await.unwrap();
    assert_err!(store.get("d/gone").await, Error::NotFound { .. });
    assert_eq!(store.head("d/gone").await.unwrap(), None);
    assert_eq!(keys(&store, "d/").await, ["d/kept"], "deleting one key must leave its siblings");
    assert_eq!(store.get("d/kept").await.unwrap(), data("y"));
    store.delete("d/gone").await.unwrap();
    store.delete("never/existed").await.unwrap();
}

async fn list_filters_by_prefix_in_byte_order(store: SharedStore) {
    // Written out of order; '-' (0x2d) < '/' (0x2f) < '0' (0x30) in byte order.
    let written = [
        "wal/1/00000000000000000042",
        "meta/other",
        "meta0",
        "meta/log/0010",
        "meta/log/0002",
        "meta-x",
        "wal/1/00000000000000000007",
        "meta/log/0001",
    ];
    for key in written {
        store.put(key, data(key)).await.unwrap();
    }
    let listed = store.list("").await.unwrap();
    let expected = [
        "meta-x",
        "meta/log/0001",
        "meta/log/0002",
        "meta/log/0010",
        "meta/other",
        "meta0",
        "wal/1/00000000000000000007",
        "wal/1/00000000000000000042",
    ];
    assert_eq!(listed.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), expected);
    for meta in &listed {
        assert_eq!(meta.size, meta.key.len() as u64, "{}: listed size", meta.key);
    }
    assert_eq!(keys(&store, "meta/log/000").await, ["meta/log/0001", "meta/log/0002"], "prefix ending mid-name");
    assert_eq!(keys(&store, "meta/log/").await, ["meta/log/0001", "meta/log/0002", "meta/log/0010"]);
    assert_eq!(keys(&store, "meta/").await, ["meta/log/0001", "meta/log/0002", "meta/log/0010", "meta/other"]);
    assert_eq!(keys(&store, "meta").await, &expected[..6]);
    assert_eq!(keys(&store, "meta/o").await, ["meta/other"]);
    assert_eq!(keys(&store, "wal/1/0000000000000000004").await, ["wal/1/00000000000000000042"]);
    for empty in ["nothing", "nothing/", "meta/log/1", "meta/other/", "meta/log/0001/x"] {
        assert_eq!(keys(&store, empty).await, Vec::<String>::new(), "list({empty:?})");
    }
}

async fn invalid_keys_are_rejected(store: SharedStore) {
    for bad in ["", "/a", "a/../b", "a//b", "a/./b", "trailing/"] {
        let is_invalid = |e: &Error| matches!(e, Error::InvalidKey { key, .. } if key == bad);
        let errors = [
            store.put(bad, data("x")).await.err(),
            store.put_if_absent(bad, data("x")).await.err(),
            store.get(bad).await.err(),
            store.get_range(bad, 0..4).await.err(),
            store.head(bad).await.err(),
            store.delete(bad).await.err(),
        ];
        for (op, error) in ["put", "put_if_absent", "get", "get_range", "head", "delete"].iter().zip(&errors) {
            assert!(error.as_ref().is_some_and(is_invalid), "{op}({bad:?}) gave {error:?}, expected InvalidKey");
        }
    }
    assert_eq!(keys(&store, "").await, Vec::<String>::new(), "a rejected key must write nothing");
}

// ---------------------------------------------------------------- decorators

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig { max_attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
}

/// A memory store, a fault injector over it, and a retrying store over the injector.
fn retrying_over_faults(max_attempts: u32) -> (SharedStore, Arc<FaultInjector>, RetryStore) {
    let inner: SharedStore = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultInjector::new(inner.clone(), 7));
    let retry = RetryStore::new(faults.clone(), quick_retries(max_attempts));
    (inner, faults, retry)
}

fn is_injected(e: &Error, retryable: bool) -> bool {
    matches!(e, Error::ObjectStore { retryable: r, .. } if *r == retryable)
}

#[tokio::test]
async fn retry_store_retries_retryable_errors_until_success() {
    let (inner, faults, retry) = retrying_over_faults(5);
    faults.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Nth(0)).on(Op::Put));
    faults.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Nth(0)).on(Op::Get));
    retry.put("k", data("v")).await.unwrap();
    assert_eq!(inner.get("k").await.unwrap(), data("v"));
    assert_eq!(retry.get("k").await.unwrap(), data("v"));
    assert_eq!(faults.request_count(), 4, "one failed and one successful attempt each for put and get");
}

#[tokio::test]
async fn retry_store_gives_up_on_permanent_errors_and_after_max_attempts() {
    let (inner, faults, retry) = retrying_over_faults(5);
    faults.add_rule(FaultRule::new(Fault::Error { retryable: false }, Trigger::Nth(0)).on(Op::Put));
    assert_err!(retry.put("k", data("v")).await, ref e if is_injected(e, false));
    assert_eq!(faults.request_count(), 1, "a permanent error must not be retried");
    assert_eq!(inner.head("k").await.unwrap(), None);

    let (inner, faults, retry) = retrying_over_faults(3);
    faults.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Always).on(Op::Put));
    assert_err!(retry.put("k", data("v")).await, ref e if is_injected(e, true));
    assert_eq!(faults.request_count(), 3, "max_attempts counts the first attempt");
    assert_eq!(inner.head("k").await.unwrap(), None);
}

#[tokio::test]
async fn retried_put_if_absent_accepts_its_own_applied_write() {
    let (inner, faults, retry) = retrying_over_faults(5);
    // The create lands, but the caller hears a timeout; the retry then meets AlreadyExists.
    faults.add_rule(FaultRule::new(Fault::ErrorAfterApply, Trigger::Nth(0)).on(Op::PutIfAbsent));
    retry.put_if_absent("meta/epoch", data("writer-a")).await.unwrap();
    assert_eq!(inner.get("meta/epoch").await.unwrap(), data("writer-a"));
    assert_eq!(faults.request_count(), 3, "create, retried create, read-back");
    // A new call (not a retry) with the same bytes is a real conflict.
    assert_err!(retry.put_if_absent("meta/epoch", data("writer-a")).await, Error::AlreadyExists { .. });
}

#[tokio::test]
async fn retried_put_if_absent_reports_a_real_conflict() {
    let (inner, faults, retry) = retrying_over_faults(5);
    inner.put("a", data("writer-b")).await.unwrap();
    inner.put("b", data("writer-b")).await.unwrap();
    faults.add_rule(FaultRule::new(Fault::ErrorAfterApply, Trigger::Nth(0)).on(Op::PutIfAbsent).under("a"));
    // A retryable failure first, so that the retry reads back and compares.
    faults.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Nth(0)).on(Op::PutIfAbsent).under("b"));
    for key in ["a", "b"] {
        assert_err!(retry.put_if_absent(key, data("writer-a")).await, Error::AlreadyExists { .. });
        assert_eq!(inner.get(key).await.unwrap(), data("writer-b"), "{key}: the other writer's object must stay");
    }
}

#[tokio::test]
async fn metrics_store_counts_requests_and_bytes() {
    let metrics = ObjectStoreMetrics::unregistered();
    let store = MetricsStore::new(Arc::new(MemoryStore::new()), metrics.clone());
    store.put("a", Bytes::from(vec![1u8; 100])).await.unwrap();
    store.put("b", Bytes::from(vec![2u8; 20])).await.unwrap();
    assert_err!(store.put_if_absent("a", data("lost")).await, Error::AlreadyExists { .. });
    store.get("a").await.unwrap();
    assert_err!(store.get("missing").await, Error::NotFound { .. });
    store.get_range("a", 10..30).await.unwrap();
    store.head("a").await.unwrap();
    store.list("").await.unwrap();
    store.delete("b").await.unwrap();
    let counts = |op: &str| (metrics.request_count(op), metrics.byte_count(op));
    assert_eq!(counts("put"), (2, 120));
    assert_eq!(counts("put_if_absent"), (1, 0), "a failed create moves no bytes");
    assert_eq!(counts("get"), (2, 100));
    assert_eq!(counts("get_range"), (1, 20));
    assert_eq!([counts("head").0, counts("list").0, counts("delete").0], [1, 1, 1]);
}

#[tokio::test]
async fn metrics_under_retry_count_every_attempt() {
    let metrics = ObjectStoreMetrics::unregistered();
    let faults = Arc::new(FaultInjector::new(Arc::new(MemoryStore::new()), 7));
    faults.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Nth(0)).on(Op::Put));
    let counted = Arc::new(MetricsStore::new(faults.clone(), metrics.clone()));
    let retry = RetryStore::new(counted, quick_retries(5));
    retry.put("k", data("12345")).await.unwrap();
    assert_eq!(metrics.request_count("put"), 2);
    assert_eq!(metrics.byte_count("put"), 5, "only the successful attempt moved bytes");
}

/// An injector over a memory store holding one object, with `rule` added afterwards.
async fn crashing(rule: FaultRule) -> (SharedStore, FaultInjector) {
    let inner: SharedStore = Arc::new(MemoryStore::new());
    let faults = FaultInjector::new(inner.clone(), 7);
    faults.put("before", data("old")).await.unwrap();
    faults.add_rule(rule);
    (inner, faults)
}

/// After a crash nothing goes through the injector, though the inner store still answers.
async fn assert_dead(faults: &FaultInjector, inner: &SharedStore) {
    assert!(faults.has_crashed());
    assert_err!(faults.get("before").await, ref e if is_injected(e, false));
    assert_err!(faults.put("after", data("x")).await, ref e if is_injected(e, false));
    assert_err!(faults.list("").await, ref e if is_injected(e, false));
    assert_eq!(inner.get("before").await.unwrap(), data("old"));
    assert_eq!(inner.head("after").await.unwrap(), None);
}

#[tokio::test]
async fn crash_before_writes_nothing_and_kills_later_requests() {
    let (inner, faults) = crashing(FaultRule::new(Fault::CrashBefore, Trigger::Nth(0)).on(Op::Put)).await;
    assert_err!(faults.put("k", data("new")).await, ref e if is_injected(e, false));
    assert_eq!(inner.head("k").await.unwrap(), None);
    assert_dead(&faults, &inner).await;
}

#[tokio::test]
async fn crash_after_leaves_the_object_written() {
    let (inner, faults) = crashing(FaultRule::new(Fault::CrashAfter, Trigger::Nth(0)).on(Op::PutIfAbsent)).await;
    assert_err!(faults.put_if_absent("k", data("new")).await, ref e if is_injected(e, false));
    assert_eq!(inner.get("k").await.unwrap(), data("new"));
    assert_dead(&faults, &inner).await;
}

#[tokio::test]
async fn torn_write_leaves_a_strict_prefix_and_crashes() {
    let full: Bytes = (0..1000u32).map(|i| (i % 256) as u8).collect();
    for (keep_fraction, kept) in [(0.0, 0), (0.5, 500), (1.0, 999)] {
        let rule = FaultRule::new(Fault::TornWrite { keep_fraction }, Trigger::Nth(0)).on(Op::Put);
        let (inner, faults) = crashing(rule).await;
        assert_err!(faults.put("k", full.clone()).await, ref e if is_injected(e, false));
        let stored = inner.get("k").await.unwrap();
        assert_eq!(stored, full.slice(..kept), "keep_fraction {keep_fraction}");
        assert_dead(&faults, &inner).await;
    }
}

#[tokio::test]
async fn latency_delays_the_request_without_failing_it() {
    let faults = FaultInjector::new(Arc::new(MemoryStore::new()), 7);
    let delay = Duration::from_millis(50);
    faults.add_rule(FaultRule::new(Fault::Latency(delay), Trigger::Always).on(Op::Get).under("slow/"));
    faults.put("slow/k", data("v")).await.unwrap();
    let started = Instant::now();
    assert_eq!(faults.get("slow/k").await.unwrap(), data("v"));
    assert!(started.elapsed() >= delay, "the get took {:?}, less than the injected {delay:?}", started.elapsed());
    assert!(!faults.has_crashed());
}

// ---------------------------------------------------------------- opening by URL

#[tokio::test]
async fn file_url_opens_a_directory_that_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = open_backend(&url, &StoreOptions::default()).await.unwrap();
    store.put("wal/1/0001", data("record batch")).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("wal/1/0001")).unwrap(), b"record batch");
    drop(store);
    let reopened = open_backend(&url, &StoreOptions::default()).await.unwrap();
    assert_eq!(reopened.get("wal/1/0001").await.unwrap(), data("record batch"));
    assert_eq!(keys(&reopened, "").await, ["wal/1/0001"], "the backend's temporary files are not listed");
}

#[tokio::test]
async fn memory_urls_share_state_by_name() {
    let options = StoreOptions::default();
    let name = unique_prefix("shared");
    let first = open_backend(&format!("memory://{name}"), &options).await.unwrap();
    let second = open_backend(&format!("memory://{name}"), &options).await.unwrap();
    first.put("k", data("v")).await.unwrap();
    assert_eq!(second.get("k").await.unwrap(), data("v"), "two opens of one name see one bucket");

    let other = open_backend(&format!("memory://{}", unique_prefix("other")), &options).await.unwrap();
    assert_err!(other.get("k").await, Error::NotFound { .. });
    let unnamed = open_backend("memory://", &options).await.unwrap();
    unnamed.put("k", data("private")).await.unwrap();
    let unnamed_again = open_backend("memory://", &options).await.unwrap();
    assert_err!(unnamed_again.get("k").await, Error::NotFound { .. });
}

#[tokio::test]
async fn s3_url_reaches_the_configured_bucket_and_prefix() {
    s3_store("s3-url-ready").await; // Waits until the server answers.
    let config = s3_config("s3-url");
    let url = format!(
        "s3://{}/{}?endpoint={}&region={}",
        config.bucket,
        config.prefix,
        config.endpoint.clone().unwrap(),
        config.region
    );
    let credentials =
        S3Credentials { access_key_id: TEST_ACCESS_KEY.to_string(), secret_access_key: TEST_SECRET_KEY.to_string() };
    let options = StoreOptions { s3_credentials: Some(credentials), ..StoreOptions::default() };
    let by_url = open_backend(&url, &options).await.unwrap();
    by_url.put("stream/1", data("via url")).await.unwrap();
    let direct = S3Store::connect(config).await;
    assert_eq!(direct.get("stream/1").await.unwrap(), data("via url"));
    assert_eq!(keys(&by_url, "").await, ["stream/1"]);
}
