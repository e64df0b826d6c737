//! The stream engine end to end: appends, hot and cold reads, restart with the local
//! directory wiped, compaction, retention trim and GC, and crash/fault injection at every
//! object-store request of a workload.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use automq_storage::clock::{ManualClock, SharedClock};
use automq_storage::metadata::{Catalog, CatalogConfig};
use automq_storage::object_store::{Fault, FaultInjector, FaultRule, RetryConfig, RetryStore, SharedStore, Trigger};
use automq_storage::stream::{StreamEngine, StreamEngineConfig, StreamMetrics};
use automq_storage::testing::{fresh_store, Backend};
use automq_storage::wal::{FileWal, FileWalConfig, S3Wal, S3WalConfig, Wal};
use automq_storage::Error;

const GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalKind {
    S3,
    File,
}

/// Small sizes everywhere so that a few KiB exercise blocks, eviction and cold reads.
fn engine_config() -> StreamEngineConfig {
    StreamEngineConfig {
        upload_interval: Duration::from_secs(3600),
        upload_bytes: 1 << 30,
        stream_object_bytes: 6 << 10,
        block_bytes: 1 << 10,
        log_cache_bytes: 4 << 10,
        block_cache_bytes: 16 << 10,
        readahead_bytes: 3 << 10,
        compaction_interval: None,
        compaction_small_object_bytes: 64 << 10,
        compaction_min_objects: 2,
        compaction_max_bytes: 1 << 20,
        gc_interval: None,
        gc_grace: GRACE,
        ..StreamEngineConfig::new(1)
    }
}

/// Opens catalog, WAL and engine over `store`, as a broker process would at start-up.
async fn start(
    store: SharedStore,
    wal: WalKind,
    dir: &std::path::Path,
    clock: SharedClock,
) -> Result<StreamEngine, Error> {
    let catalog = Catalog::open(store.clone(), CatalogConfig::default(), clock.clone()).await?;
    let (wal, recovered): (Arc<dyn Wal>, _) = match wal {
        WalKind::S3 => {
            let config = S3WalConfig {
                max_batch_bytes: 16 << 10,
                max_batch_delay: Duration::from_millis(1),
                ..S3WalConfig::new(1)
            };
            let (w, r) = S3Wal::open(store.clone(), config, clock.clone()).await?;
            (Arc::new(w), r)
        }
        WalKind::File => {
            let config = FileWalConfig {
                segment_bytes: 64 << 10,
                max_segments: 8,
                max_write_bytes: 32 << 10,
                ..FileWalConfig::new(dir)
            };
            // A crashed predecessor's writer thread may still hold the lock for a moment.
            let mut attempt = 0;
            let (w, r) = loop {
                match FileWal::open(config.clone()) {
                    Err(Error::Fenced(_)) if attempt < 100 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => break other?,
                }
            };
            (Arc::new(w), r)
        }
    };
    StreamEngine::open(engine_config(), store, wal, recovered, catalog, clock, StreamMetrics::new(None)).await
}

fn payload(rng: &mut StdRng, stream: u64, base: u64) -> Bytes {
    let len = rng.random_range(1..1500);
    let mut v = format!("s{stream}o{base}:").into_bytes();
    v.extend((0..len).map(|_| rng.random::<u8>()));
    Bytes::from(v)
}

/// Reads a whole stream from its start through `fetch`, in small steps.
async fn read_all(engine: &StreamEngine, stream: u64) -> (u64, Vec<(u64, u64, Bytes)>) {
    let from = engine_start(engine, stream).await;
    let first = engine.fetch(stream, from, 1).await.unwrap_or_else(|e| panic!("fetch {stream}@{from}: {e}"));
    let (start, end) = (first.start_offset, first.end_offset);
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let r = engine.fetch(stream, at, 2000).await.unwrap_or_else(|e| panic!("fetch {stream}@{at}: {e}"));
        assert!(!r.batches.is_empty(), "no batch at {at} below end {end}");
        for b in r.batches {
            assert!(b.end_offset > at, "batch {}..{} does not advance past {at}", b.base_offset, b.end_offset);
            at = b.end_offset;
            out.push((b.base_offset, b.end_offset, b.payload));
        }
    }
    (start, out)
}

async fn engine_start(engine: &StreamEngine, stream: u64) -> u64 {
    engine.catalog().state().streams[&stream].start_offset
}

/// Every object the catalog references must exist: GC never deletes a live object.
async fn assert_referenced_objects_exist(engine: &StreamEngine, store: &SharedStore) {
    for o in engine.catalog().state().objects.values() {
        assert!(store.head(&o.key).await.unwrap().is_some(), "referenced object {} is missing", o.key);
    }
}

macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Memory).await } )* }
        mod file { $( #[tokio::test] async fn $name() { super::$name(super::Backend::File).await } )* }
        mod s3 { $( #[tokio::test] async fn $name() { super::$name(super::Backend::S3).await } )* }
    };
}

per_backend!(
    appends_read_back_hot_and_cold,
    restart_with_local_directory_wiped_loses_nothing,
    file_wal_restart_loses_nothing,
    compaction_trim_and_gc_keep_reads_intact,
    orphans_are_collected_only_after_the_grace_period,
    crash_matrix_sampled,
);

async fn appends_read_back_hot_and_cold(backend: Backend) {
    let (store, _dir) = fresh_store(backend, "hot-cold").await;
    let wal_dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = ManualClock::new(1_000_000);
    let engine = start(store.clone(), WalKind::S3, wal_dir.path(), clock).await.unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let streams = [engine.create_stream().await.unwrap(), engine.create_stream().await.unwrap()];
    let mut expected: BTreeMap<u64, Vec<(u64, u64, Bytes)>> = BTreeMap::new();
    for &s in &streams {
        engine.open_stream(s).await.unwrap();
    }
    for i in 0..60u64 {
        let s = streams[(i % 2) as usize];
        let next = expected.get(&s).and_then(|v| v.last()).map(|b| b.1).unwrap_or(0);
        // Every fifth batch leaves a gap, as a mirrored log may.
        let base = if i % 5 == 4 { next + 3 } else { next };
        let end = base + rng.random_range(1..4);
        let p = payload(&mut rng, s, base);
        engine.append(s, base, end, p.clone()).await.unwrap();
        expected.entry(s).or_default().push((base, end, p));
        if i % 20 == 19 {
            engine.flush().await.unwrap();
        }
    }
    let err = engine.append(streams[0], 0, 1, Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidAppend { .. }), "rewinding must be refused: {err}");
    for &s in &streams {
        // The log cache holds only 4 KiB, so the start of each stream is read from objects.
        let (_, got) = read_all(&engine, s).await;
        assert_eq!(got, expected[&s], "stream {s} reads back byte-identical");
        let tail = engine.fetch(s, expected[&s].last().unwrap().1, 100).await.unwrap();
        assert!(tail.batches.is_empty());
        let beyond = engine.fetch(s, tail.end_offset + 1, 100).await.unwrap_err();
        assert!(matches!(beyond, Error::OffsetOutOfRange { .. }));
    }
    engine.shutdown().await.unwrap();
}

async fn restart_with_local_directory_wiped_loses_nothing(backend: Backend) {
    let (inner, _dir) = fresh_store(backend, "wiped").await;
    let clock: SharedClock = ManualClock::new(1_000_000);
    let injector = Arc::new(FaultInjector::new(inner.clone(), 7));
    let expected = {
        let wal_dir = tempfile::tempdir().unwrap();
        let engine = start(injector.clone(), WalKind::S3, wal_dir.path(), clock.clone()).await.unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let mut expected = BTreeMap::new();
        for _ in 0..3 {
            let s = engine.create_stream().await.unwrap();
            engine.open_stream(s).await.unwrap();
            expected.insert(s, Vec::new());
        }
        for i in 0..45u64 {
            let s = 1 + i % 3;
            let v: &mut Vec<(u64, u64, Bytes)> = expected.get_mut(&s).unwrap();
            let base = v.last().map(|b| b.1).unwrap_or(0);
            let p = payload(&mut rng, s, base);
            engine.append(s, base, base + 2, p.clone()).await.unwrap();
            v.push((base, base + 2, p));
            if i == 20 {
                engine.flush().await.unwrap(); // some data in objects, the rest only in the WAL
            }
        }
        // The process dies: nothing more reaches the bucket, and its directory is gone.
        injector.crash();
        drop(engine);
        expected
    };
    let fresh_dir = tempfile::tempdir().unwrap();
    let engine = start(inner.clone(), WalKind::S3, fresh_dir.path(), clock).await.unwrap();
    for (s, want) in &expected {
        engine.open_stream(*s).await.unwrap();
        assert_eq!(&read_all(&engine, *s).await.1, want, "stream {s} after restart");
    }
    assert_referenced_objects_exist(&engine, &inner).await;
    engine.shutdown().await.unwrap();
}

async fn file_wal_restart_loses_nothing(backend: Backend) {
    let (store, _dir) = fresh_store(backend, "file-wal").await;
    let wal_dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = ManualClock::new(1_000_000);
    let mut rng = StdRng::seed_from_u64(3);
    let mut expected = Vec::new();
    let s = {
        let engine = start(store.clone(), WalKind::File, wal_dir.path(), clock.clone()).await.unwrap();
        let s = engine.create_stream().await.unwrap();
        engine.open_stream(s).await.unwrap();
        // Concurrent appends to one stream must be issued in order; do batches of 8 at once
        // across two streams to exercise group commit.
        let other = engine.create_stream().await.unwrap();
        engine.open_stream(other).await.unwrap();
        for round in 0..10u64 {
            let base = round * 4;
            let p = payload(&mut rng, s, base);
            let q = payload(&mut rng, other, base);
            let (a, b) =
                tokio::join!(engine.append(s, base, base + 4, p.clone()), engine.append(other, base, base + 4, q));
            a.unwrap();
            b.unwrap();
            expected.push((base, base + 4, p));
            if round == 4 {
                engine.flush().await.unwrap();
            }
        }
        drop(engine); // crash: no flush, no close
        s
    };
    let engine = start(store.clone(), WalKind::File, wal_dir.path(), clock).await.unwrap();
    engine.open_stream(s).await.unwrap();
    assert_eq!(read_all(&engine, s).await.1, expected);
    engine.shutdown().await.unwrap();
}

async fn compaction_trim_and_gc_keep_reads_intact(backend: Backend) {
    let (store, _dir) = fresh_store(backend, "compact").await;
    let wal_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let engine = start(store.clone(), WalKind::File, wal_dir.path(), clock.clone()).await.unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let (a, b) = (engine.create_stream().await.unwrap(), engine.create_stream().await.unwrap());
    engine.open_stream(a).await.unwrap();
    engine.open_stream(b).await.unwrap();
    let mut expected: BTreeMap<u64, Vec<(u64, u64, Bytes)>> = BTreeMap::new();
    for i in 0..40u64 {
        for s in [a, b] {
            let p = payload(&mut rng, s, i);
            engine.append(s, i, i + 1, p.clone()).await.unwrap();
            expected.entry(s).or_default().push((i, i + 1, p));
        }
        if i % 4 == 3 {
            engine.flush().await.unwrap(); // ten small stream-set objects
        }
    }
    let before = engine.catalog().state().objects.len();
    let report = engine.compact_now().await.unwrap();
    let after = engine.catalog().state().objects.len();
    assert!(report.objects_read >= 2 && after < before, "compaction merged {before} objects into {after}: {report:?}");
    for s in [a, b] {
        assert_eq!(read_all(&engine, s).await.1, expected[&s], "reads after compaction");
    }
    // Retention: drop the first 25 offsets of stream a.
    engine.trim(a, 25).await.unwrap();
    let err = engine.fetch(a, 10, 100).await.unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { start_offset: 25, .. }), "{err}");
    let (start, got) = read_all(&engine, a).await;
    assert_eq!((start, got.as_slice()), (25, &expected[&a][25..]));
    // Released objects are deleted only after the grace period.
    let released: Vec<String> = engine.catalog().state().deleting.values().map(|d| d.key.clone()).collect();
    assert!(!released.is_empty(), "compaction released the merged objects");
    assert_eq!(engine.gc_now().await.unwrap().released_deleted, 0, "nothing is deleted before the grace period");
    clock.advance_ms(GRACE.as_millis() as u64 + 1);
    let gc = engine.gc_now().await.unwrap();
    assert_eq!(gc.released_deleted, released.len());
    for key in &released {
        assert!(store.head(key).await.unwrap().is_none(), "{key} deleted");
    }
    assert!(engine.catalog().state().deleting.is_empty());
    assert_referenced_objects_exist(&engine, &store).await;
    for s in [a, b] {
        let want = if s == a { &expected[&a][25..] } else { &expected[&b][..] };
        assert_eq!(read_all(&engine, s).await.1, want, "reads after GC");
    }
    engine.shutdown().await.unwrap();
}

async fn orphans_are_collected_only_after_the_grace_period(backend: Backend) {
    let (store, _dir) = fresh_store(backend, "orphans").await;
    let wal_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let engine = start(store.clone(), WalKind::File, wal_dir.path(), clock.clone()).await.unwrap();
    let s = engine.create_stream().await.unwrap();
    engine.open_stream(s).await.unwrap();
    engine.append(s, 0, 1, Bytes::from_static(b"live")).await.unwrap();
    engine.flush().await.unwrap();
    // An upload whose commit never happened (its uploader died).
    let orphan = format!("data/{:016x}-{:013}", 42u64, 10_000_000u64);
    store.put(&orphan, Bytes::from_static(b"orphan")).await.unwrap();
    assert_eq!(engine.gc_now().await.unwrap().orphans_deleted, 0);
    assert!(store.head(&orphan).await.unwrap().is_some());
    clock.advance_ms(GRACE.as_millis() as u64);
    assert_eq!(engine.gc_now().await.unwrap().orphans_deleted, 1);
    assert!(store.head(&orphan).await.unwrap().is_none());
    assert_referenced_objects_exist(&engine, &store).await;
    assert_eq!(read_all(&engine, s).await.1[0].2, Bytes::from_static(b"live"));
    engine.shutdown().await.unwrap();
}

/// What the workload tried and what it was told.
#[derive(Debug, Default)]
struct Model {
    /// stream -> base -> (end, payload, acknowledged)
    appends: BTreeMap<u64, BTreeMap<u64, (u64, Bytes, bool)>>,
    /// stream -> (trim acknowledged up to, trim attempted up to)
    trims: BTreeMap<u64, (u64, u64)>,
}

/// A seeded workload of appends, uploads, compactions, trims and GCs. Stops at the first
/// error, as a crashed process would.
async fn workload(
    engine: &StreamEngine,
    clock: &ManualClock,
    seed: u64,
    model: &mut Model,
    dead: &(dyn Fn() -> bool + Sync),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let Ok(s) = engine.create_stream().await else { return };
        if engine.open_stream(s).await.is_err() {
            return;
        }
        streams.push(s);
        model.appends.insert(s, BTreeMap::new());
        model.trims.insert(s, (0, 0));
    }
    for _ in 0..40 {
        let step = rng.random_range(0..12);
        let result = async {
            match step {
                0..=6 => {
                    // Two streams at once: group commit.
                    let mut futs = Vec::new();
                    for &s in streams.iter().take(rng.random_range(1..3)) {
                        let next = model.appends[&s].last_key_value().map(|(_, (e, _, _))| *e).unwrap_or(0);
                        let p = payload(&mut rng, s, next);
                        let end = next + rng.random_range(1..4);
                        model.appends.get_mut(&s).unwrap().insert(next, (end, p.clone(), false));
                        futs.push(async move { (s, next, engine.append(s, next, end, p).await) });
                    }
                    let mut outcome = Ok(());
                    for (s, base, r) in futures::future::join_all(futs).await {
                        match r {
                            Ok(()) => model.appends.get_mut(&s).unwrap().get_mut(&base).unwrap().2 = true,
                            Err(e) => outcome = Err(e),
                        }
                    }
                    outcome
                }
                7 | 8 => engine.flush().await,
                9 => engine.compact_now().await.map(|_| ()),
                10 => {
                    let s = streams[rng.random_range(0..streams.len())];
                    let acked: Vec<u64> = model.appends[&s].iter().filter(|(_, v)| v.2).map(|(b, _)| *b).collect();
                    match acked.get(acked.len() / 2) {
                        Some(&to) if to > model.trims[&s].0 => {
                            model.trims.get_mut(&s).unwrap().1 = to;
                            let r = engine.trim(s, to).await;
                            if r.is_ok() {
                                model.trims.get_mut(&s).unwrap().0 = to;
                            }
                            r
                        }
                        _ => Ok(()),
                    }
                }
                _ => {
                    clock.advance_ms(GRACE.as_millis() as u64 + 1);
                    engine.gc_now().await.map(|_| ())
                }
            }
        };
        // A crashed process does nothing more: stop as soon as the fault killed it (an append
        // may otherwise wait for upload space on a bucket it can no longer reach).
        let died = async {
            while !dead() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let ok = tokio::select! {
            r = result => r.is_ok(),
            _ = died => false,
        };
        if !ok {
            return;
        }
    }
}

/// Restarts over `store` and checks the model: every acknowledged batch at or above the
/// stream's start is there byte-identical, nothing read back was never written, and every
/// referenced object exists.
async fn verify(
    store: SharedStore,
    wal: WalKind,
    dir: &std::path::Path,
    clock: SharedClock,
    model: &Model,
    context: &str,
) {
    eprintln!("verifying {context}");
    let engine =
        start(store.clone(), wal, dir, clock).await.unwrap_or_else(|e| panic!("{context}: restart failed: {e}"));
    for (&s, appends) in &model.appends {
        if !engine.catalog().state().streams.contains_key(&s) {
            assert!(appends.values().all(|v| !v.2), "{context}: stream {s} vanished with acknowledged data");
            continue;
        }
        engine.open_stream(s).await.unwrap_or_else(|e| panic!("{context}: open {s}: {e}"));
        let (start, got) = read_all(&engine, s).await;
        let (acked_trim, tried_trim) = model.trims[&s];
        assert!(
            start == acked_trim || start == tried_trim || (acked_trim == 0 && start == 0),
            "{context}: stream {s} starts at {start}"
        );
        let got: BTreeMap<u64, (u64, Bytes)> = got.into_iter().map(|(b, e, p)| (b, (e, p))).collect();
        for (base, (end, payload)) in &got {
            let tried = appends
                .get(base)
                .unwrap_or_else(|| panic!("{context}: stream {s} has a batch at {base} nobody appended"));
            assert_eq!(
                (&tried.0, &tried.1),
                (end, payload),
                "{context}: stream {s} batch {base} differs from what was appended"
            );
        }
        for (base, (end, payload, acked)) in appends.iter().filter(|(b, v)| v.2 && **b >= start) {
            assert_eq!(
                got.get(base),
                Some(&(*end, payload.clone())),
                "{context}: acknowledged batch {s}@{base} lost (acked={acked})"
            );
        }
    }
    assert_referenced_objects_exist(&engine, &store).await;
    engine.shutdown().await.unwrap_or_else(|e| panic!("{context}: shutdown: {e}"));
}

/// Runs the workload with one fault injected at request `k` of every kind, for every `k`
/// (or every `step`-th) up to what a fault-free run issues.
async fn crash_matrix(backend: Backend, wal: WalKind, step: u64) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (probe_store, _pdir) = fresh_store(backend, "crash-probe").await;
    let probe = Arc::new(FaultInjector::new(probe_store, 0));
    let probe_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    {
        let engine = start(probe.clone(), wal, probe_dir.path(), clock.clone()).await.unwrap();
        let before = probe.request_count();
        workload(&engine, &clock, 11, &mut Model::default(), &|| false).await;
        engine.shutdown().await.unwrap();
        assert!(probe.request_count() > before + 20, "the workload issues object store requests");
    }
    let total = probe.request_count();
    let faults = [
        ("crash-before", Fault::CrashBefore),
        ("crash-after", Fault::CrashAfter),
        ("torn-write", Fault::TornWrite { keep_fraction: 0.5 }),
        ("error", Fault::Error { retryable: false }),
    ];
    let mut k = 0;
    while k < total {
        for (name, fault) in &faults {
            eprintln!("crash matrix: {wal:?} WAL, {name} at request {k} of {total}");
            let (inner, _idir) = fresh_store(backend, "crash").await;
            let injector = Arc::new(FaultInjector::new(inner.clone(), k));
            injector.add_rule(FaultRule::new(fault.clone(), Trigger::GlobalNth(k)));
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(1_000_000);
            let mut model = Model::default();
            if let Ok(engine) = start(injector.clone(), wal, dir.path(), clock.clone()).await {
                let crashed = injector.clone();
                workload(&engine, &clock, 11, &mut model, &move || crashed.has_crashed()).await;
                if !injector.has_crashed() {
                    eprintln!("  shutting down");
                    let _ = engine.shutdown().await;
                }
                eprintln!("  verifying");
                injector.crash(); // whatever happened, the process is gone now
            }
            let context = format!("{wal:?} WAL, {name} at request {k}");
            verify(inner, wal, dir.path(), clock, &model, &context).await;
        }
        k += step;
    }
}

/// The full matrix on the memory backend, both WALs, every request index.
#[tokio::test]
async fn crash_matrix_s3_wal_every_request() {
    crash_matrix(Backend::Memory, WalKind::S3, 1).await;
}

#[tokio::test]
async fn crash_matrix_file_wal_every_request() {
    crash_matrix(Backend::Memory, WalKind::File, 1).await;
}

/// The same matrix sampled on the real backends (S3 requests cost real time).
async fn crash_matrix_sampled(backend: Backend) {
    let step = if backend == Backend::Memory { 7 } else { 13 };
    crash_matrix(backend, WalKind::S3, step).await;
}

/// Transient errors everywhere (behind the retry decorator) change nothing a user sees.
#[tokio::test]
async fn transient_errors_are_retried_without_loss_or_duplicates() {
    let (inner, _d) = fresh_store(Backend::Memory, "flaky").await;
    let injector = Arc::new(FaultInjector::new(inner.clone(), 99));
    injector.add_rule(FaultRule::new(Fault::Error { retryable: true }, Trigger::Probability(0.15)));
    injector.add_rule(FaultRule::new(Fault::ErrorAfterApply, Trigger::Probability(0.05)));
    let retry =
        RetryConfig { max_attempts: 50, base_delay: Duration::from_micros(100), max_delay: Duration::from_millis(2) };
    let store: SharedStore = Arc::new(RetryStore::new(injector.clone(), retry));
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let engine = start(store.clone(), WalKind::S3, dir.path(), clock.clone()).await.unwrap();
    let mut model = Model::default();
    workload(&engine, &clock, 5, &mut model, &|| false).await;
    let acked = model.appends.values().flat_map(|m| m.values()).filter(|v| v.2).count();
    let tried = model.appends.values().flat_map(|m| m.values()).count();
    assert_eq!(acked, tried, "with retries every append is acknowledged");
    engine.shutdown().await.unwrap();
    injector.clear_rules();
    verify(inner, WalKind::S3, dir.path(), clock, &model, "transient errors").await;
}

/// Log compaction above the storage layer: a committed range is replaced by fewer batches at
/// their original offsets, reads skip the gaps, the change survives a restart, and the old
/// objects are released to GC.
#[tokio::test]
async fn a_rewritten_range_reads_back_with_its_gaps() {
    let (store, _d) = fresh_store(Backend::Memory, "rewrite").await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let engine = start(store.clone(), WalKind::File, dir.path(), clock.clone()).await.unwrap();
    let (s, other) = (engine.create_stream().await.unwrap(), engine.create_stream().await.unwrap());
    engine.open_stream(s).await.unwrap();
    engine.open_stream(other).await.unwrap();
    let payload = |i: u64| Bytes::from(format!("batch-{i}"));
    for i in 0..10u64 {
        engine.append(s, i * 2, i * 2 + 2, payload(i)).await.unwrap();
        engine.append(other, i, i + 1, payload(100 + i)).await.unwrap();
        if i == 4 {
            engine.flush().await.unwrap();
        }
    }
    engine.flush().await.unwrap();
    let end = engine.rewrite_boundary(s, 14).unwrap().expect("a committed boundary at or below 14");
    assert!((10..=14).contains(&end), "boundary {end}");
    // Keep every third batch of 0..end.
    let kept: Vec<_> = (0..end / 2)
        .filter(|i| i % 3 == 0)
        .map(|i| automq_storage::stream::StoredBatch { base_offset: i * 2, end_offset: i * 2 + 2, payload: payload(i) })
        .collect();
    let out_of_range =
        vec![automq_storage::stream::StoredBatch { base_offset: end, end_offset: end + 2, payload: payload(99) }];
    assert!(engine.rewrite_range(s, 0, end, out_of_range).await.is_err());
    engine.rewrite_range(s, 0, end, kept.clone()).await.unwrap();
    let expect: Vec<(u64, u64, Bytes)> = kept
        .iter()
        .map(|b| (b.base_offset, b.end_offset, b.payload.clone()))
        .chain((end / 2..10).map(|i| (i * 2, i * 2 + 2, payload(i))))
        .collect();
    assert_eq!(read_all(&engine, s).await.1, expect, "reads skip the dropped batches, even from the hot cache");
    assert_eq!(read_all(&engine, other).await.1.len(), 10, "the other stream is untouched");
    engine.shutdown().await.unwrap();
    drop(engine); // releases the file WAL's lock
    let engine = start(store.clone(), WalKind::File, dir.path(), clock.clone()).await.unwrap();
    engine.open_stream(s).await.unwrap();
    assert_eq!(read_all(&engine, s).await.1, expect, "after a restart");
    clock.advance_ms(GRACE.as_millis() as u64 + 1);
    engine.gc_now().await.unwrap();
    assert_referenced_objects_exist(&engine, &store).await;
    engine.shutdown().await.unwrap();
}
