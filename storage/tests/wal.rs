//! The write-ahead logs' promise, checked end to end: every acknowledged record comes back
//! after a reopen, byte for byte and in position order, and nothing else does but other
//! records that were really appended (never torn, stale or fenced bytes).
//!
//! File WAL tests run on temporary directories with 64 KiB segments, so a few hundred records
//! roll, pad and recycle segments. S3 WAL bodies take a fresh, empty `SharedStore` and are
//! stamped out once per backend by `backends!`, as `memory::<body>`, `file::<body>` and
//! `s3::<body>` (the last against a real SeaweedFS; never skipped).
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test, with its location.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use automq_storage::clock;
use automq_storage::object_store::{
    Fault, FaultInjector, FaultRule, MetricsStore, ObjectStoreMetrics, Op, RetryConfig, RetryStore, SharedStore,
    Trigger,
};
use automq_storage::wal::{
    FileWal, FileWalConfig, PendingAppend, RecoveredRecord, S3Wal, S3WalConfig, Wal, WalPosition, WalRecord,
    FRAME_HEADER_LEN,
};
use automq_storage::Error;
use bytes::Bytes;

automq_storage::store_tests!(
    group_commit_batches_concurrent_appends,
    a_new_incarnation_fences_the_old_writer,
    trim_deletes_old_objects_but_keeps_the_newest,
    positions_keep_increasing_across_idle_restarts,
    a_torn_object_is_never_recovered,
    transient_errors_are_retried_without_duplicates,
    a_lost_first_object_hides_the_objects_after_it,
);

type Acked = Vec<(WalPosition, WalRecord)>;

/// A record with a payload that differs for every (stream, seq), so a mix-up shows.
fn record(stream_id: u64, seq: u64, len: usize) -> WalRecord {
    let seed = stream_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq.wrapping_mul(0xd1b5_4a32_d192_ed03);
    let payload: Bytes =
        (0..len as u64).map(|i| (seed.wrapping_add(i).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8).collect();
    WalRecord { stream_id, epoch: 3, base_offset: seq * 10, end_offset: seq * 10 + 10, payload }
}

/// Appends `records` in order, then waits until each is durable.
async fn append_all(wal: &dyn Wal, records: impl IntoIterator<Item = WalRecord>) -> Acked {
    let pending: Vec<_> = records.into_iter().map(|r| (wal.append(r.clone()).unwrap(), r)).collect();
    let mut acked = Vec::new();
    for (pending, record) in pending {
        let position = pending.position;
        pending.durable().await.unwrap();
        acked.push((position, record));
    }
    acked
}

/// Appends `per_stream` records for each of `streams` streams, one task per stream, each task
/// waiting for its record to be durable before the next; returns what was acknowledged.
async fn append_concurrently(wal: Arc<dyn Wal>, streams: u64, per_stream: u64, len: fn(u64, u64) -> usize) -> Acked {
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for seq in 0..per_stream {
                    acked.extend(append_all(&*wal, [record(stream, seq, len(stream, seq))]).await);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

/// Asserts that `recovered` is exactly `expected`, in position order, byte for byte.
fn assert_recovered(recovered: &[RecoveredRecord], expected: &[(WalPosition, WalRecord)], what: &str) {
    let mut expected = expected.to_vec();
    expected.sort_by_key(|(p, _)| *p);
    let got: Vec<WalPosition> = recovered.iter().map(|r| r.position).collect();
    let want: Vec<WalPosition> = expected.iter().map(|(p, _)| *p).collect();
    assert_eq!(got, want, "{what}: recovered positions");
    for (r, (position, record)) in recovered.iter().zip(&expected) {
        assert!(r.record == *record, "{what}: the record at position {position} is not the one acknowledged");
    }
}

/// Asserts what may come back after a trim at `trimmed`: every acknowledged record above it,
/// in order, and otherwise only records that really were acknowledged at those positions.
fn assert_recovered_after_trim(
    recovered: &[RecoveredRecord],
    acked: &[(WalPosition, WalRecord)],
    trimmed: WalPosition,
    what: &str,
) {
    let by_position: std::collections::BTreeMap<_, _> = acked.iter().map(|(p, r)| (*p, r)).collect();
    assert!(recovered.windows(2).all(|w| w[0].position < w[1].position), "{what}: positions not increasing");
    for r in recovered {
        let acked = by_position
            .get(&r.position)
            .unwrap_or_else(|| panic!("{what}: position {} was never acknowledged", r.position));
        assert!(r.record == **acked, "{what}: the record at position {} is not the one acknowledged", r.position);
    }
    let kept: Vec<_> = acked.iter().filter(|(p, _)| *p > trimmed).cloned().collect();
    let back: Vec<_> = recovered.iter().filter(|r| r.position > trimmed).cloned().collect();
    assert_recovered(&back, &kept, &format!("{what}: records above the trim point {trimmed}"));
}

// ---------------------------------------------------------------- file WAL

const SEGMENT: u64 = 64 << 10;
/// A data frame's body before the payload: position, kind, stream, epoch, base and end offset
/// (`docs/storage-formats.md`).
const DATA_BODY_FIXED: usize = 8 + 1 + 4 * 8;
/// A padding frame: header, position, kind. Every segment keeps room for one.
const PADDING_FRAME: usize = FRAME_HEADER_LEN + 8 + 1;

fn frame_len(record: &WalRecord) -> usize {
    FRAME_HEADER_LEN + DATA_BODY_FIXED + record.payload.len()
}

fn file_config(dir: &Path, max_segments: usize) -> FileWalConfig {
    FileWalConfig { segment_bytes: SEGMENT, max_segments, max_write_bytes: 256 << 10, ..FileWalConfig::new(dir) }
}

fn open_file_wal(dir: &Path, max_segments: usize) -> (FileWal, Vec<RecoveredRecord>) {
    FileWal::open(file_config(dir, max_segments)).unwrap()
}

/// The segment file holding `position`, and the offset of `position` in it.
fn segment_of(dir: &Path, position: WalPosition) -> (PathBuf, u64) {
    (dir.join(format!("{:020}.wal", position / SEGMENT * SEGMENT)), position % SEGMENT)
}

/// Rewrites the file at `path` after `edit` changed its bytes.
fn patch(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// Damages the second half of the frame at `position`, as a write torn by a crash would.
fn tear(dir: &Path, position: WalPosition, record: &WalRecord, garbage: bool) {
    let (path, offset) = segment_of(dir, position);
    let (start, end) = (offset as usize + frame_len(record) / 2, offset as usize + frame_len(record));
    patch(&path, |bytes| {
        bytes[start..end].iter_mut().enumerate().for_each(|(i, b)| *b = if garbage { (i * 37 + 11) as u8 } else { 0 })
    });
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_wal_concurrent_appends_all_come_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovered) = open_file_wal(dir.path(), 8);
    assert!(recovered.is_empty());
    let wal = Arc::new(wal);
    let acked =
        append_concurrently(wal.clone(), 16, 20, |stream, seq| 64 + ((stream * 131 + seq * 977) % 1500) as usize).await;
    let last = acked.iter().map(|(p, _)| *p).max().unwrap();
    assert!(last / SEGMENT >= 3, "the records should have rolled several segments, ending at {last}");
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, recovered) = open_file_wal(dir.path(), 8);
    assert_recovered(&recovered, &acked, "after reopen");
}

#[tokio::test]
async fn file_wal_cuts_a_torn_tail_and_continues_after_it() {
    for garbage in [false, true] {
        let what = format!("(garbage: {garbage})");
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_file_wal(dir.path(), 8);
        // 2 KiB records: 31 fit a segment, so 40 end in the second one.
        let mut acked = append_all(&wal, (0..40).map(|i| record(1, i, 2000))).await;
        wal.close().await.unwrap();
        drop(wal);
        // A torn group commit: its last frame reached the disk, the one before did not.
        let _after_tear = acked.pop().unwrap();
        let (torn_position, torn_record) = acked.pop().unwrap();
        tear(dir.path(), torn_position, &torn_record, garbage);

        let (wal, recovered) = open_file_wal(dir.path(), 8);
        assert_recovered(&recovered, &acked, &format!("torn tail {what}"));
        // One record of the torn one's size ends exactly where the cut-off frame after it
        // began: that frame must not come back now that it lines up again.
        acked.extend(append_all(&wal, [record(2, 0, 2000)]).await);
        wal.close().await.unwrap();
        drop(wal);
        let (wal, recovered) = open_file_wal(dir.path(), 8);
        assert_recovered(&recovered, &acked, &format!("one append after a torn tail {what}"));
        acked.extend(append_all(&wal, (1..10).map(|i| record(2, i, 1500))).await);
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, recovered) = open_file_wal(dir.path(), 8);
        assert_recovered(&recovered, &acked, &format!("more appends after a torn tail {what}"));
    }
}

#[tokio::test]
async fn file_wal_never_returns_stale_records_of_recycled_segments() {
    const MAX_SEGMENTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_file_wal(dir.path(), MAX_SEGMENTS);
    // Equal-sized records, so stale frames of earlier laps sit exactly where new ones start.
    let mut acked: Acked = Vec::new();
    let mut trimmed = 0;
    for round in 0..10u64 {
        acked.extend(append_all(&wal, (0..40).map(|i| record(round, i, 2000))).await);
        assert!(wal_files(dir.path()) <= MAX_SEGMENTS, "the WAL outgrew its {MAX_SEGMENTS} segment files");
        // Trim all but the latest round, as an uploader running a round behind would.
        if round > 0 {
            trimmed = acked[acked.len() - 41].0;
            wal.trim(trimmed).await.unwrap();
        }
    }
    let end = acked.last().unwrap().0;
    assert!(end > 2 * MAX_SEGMENTS as u64 * SEGMENT, "segment files should have been reused for several laps");
    wal.close().await.unwrap();
    drop(wal);

    let (wal, recovered) = open_file_wal(dir.path(), MAX_SEGMENTS);
    assert_recovered_after_trim(&recovered, &acked, trimmed, "clean reopen");
    assert!(
        recovered[0].position >= (trimmed + 1) / SEGMENT * SEGMENT,
        "more than a segment of trimmed records came back"
    );
    wal.close().await.unwrap();
    drop(wal);

    // A torn tail in a recycled segment: the stale frame right after it must not be read.
    let (torn_position, torn_record) = acked.pop().unwrap();
    tear(dir.path(), torn_position, &torn_record, false);
    let (wal, recovered) = open_file_wal(dir.path(), MAX_SEGMENTS);
    assert_recovered_after_trim(&recovered, &acked, trimmed, "torn tail in a recycled segment");
    assert!(recovered.iter().all(|r| r.position != torn_position), "the torn record came back");
    acked.extend(append_all(&wal, (0..20).map(|i| record(99, i, 2000))).await);
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, recovered) = open_file_wal(dir.path(), MAX_SEGMENTS);
    assert_recovered_after_trim(&recovered, &acked, trimmed, "appends after the torn tail");
}

#[tokio::test]
async fn file_wal_refuses_to_cut_acknowledged_records_after_mid_log_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_file_wal(dir.path(), 8);
    let acked = append_all(&wal, (0..50).map(|i| record(1, i, 2000))).await;
    assert!(acked.last().unwrap().0 / SEGMENT == 1, "the records should span two segments");
    wal.close().await.unwrap();
    drop(wal);

    // One flipped payload byte in the fifth record, in the first segment.
    let (path, offset) = segment_of(dir.path(), acked[4].0);
    let at = (offset as usize) + frame_len(&acked[4].1) - 100;
    patch(&path, |bytes| bytes[at] ^= 0x20);
    for attempt in 0..2 {
        match FileWal::open(file_config(dir.path(), 8)).map(|(_, r)| r.len()) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("open {attempt} over a corrupt first segment gave {other:?}, expected Err(Corrupt)"),
        }
    }
    // The refused opens changed nothing: with the byte repaired, everything is back.
    patch(&path, |bytes| bytes[at] ^= 0x20);
    let (_wal, recovered) = open_file_wal(dir.path(), 8);
    assert_recovered(&recovered, &acked, "after repairing the flipped byte");
}

/// Appends 4000-byte records, each awaited, until one is placed in `segment`; returns that one
/// without waiting for it.
async fn fill_to_segment(wal: &FileWal, segment: u64, acked: &mut Acked) -> (PendingAppend, WalRecord) {
    loop {
        let r = record(1, acked.len() as u64, 4000);
        let pending = wal.append(r.clone()).unwrap();
        if pending.position / SEGMENT == segment {
            return (pending, r);
        }
        let position = pending.position;
        pending.durable().await.unwrap();
        acked.push((position, r));
    }
}

/// Opens `dir` as soon as the previous WAL's writer has let go of it.
async fn reopen_when_unlocked(dir: &Path, max_segments: usize) -> (FileWal, Vec<RecoveredRecord>) {
    loop {
        match FileWal::open(file_config(dir, max_segments)) {
            Ok(opened) => return opened,
            Err(Error::Fenced(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("reopening {} failed: {e}", dir.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_wal_appends_wait_for_a_trim_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_file_wal(dir.path(), 3);
    let mut acked: Acked = Vec::new();
    let (blocked, blocked_record) = fill_to_segment(&wal, 3, &mut acked).await;
    let blocked_position = blocked.position;
    let mut blocked = Box::pin(blocked.durable());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut blocked).await.is_err(),
        "an append beyond 3 full segments became durable without a trim"
    );
    let behind_record = record(2, 0, 100);
    let behind = wal.append(behind_record.clone()).unwrap();
    // Everything acknowledged is persisted elsewhere: the full segments can go.
    let trimmed = acked.last().unwrap().0;
    wal.trim(trimmed).await.unwrap();
    blocked.await.unwrap();
    acked.push((blocked_position, blocked_record));
    let behind_position = behind.position;
    behind.durable().await.unwrap();
    acked.push((behind_position, behind_record));

    // Full again (the trim freed two segments), and dropped: the waiting append fails instead
    // of waiting forever, and the directory is released.
    let (blocked, _) = fill_to_segment(&wal, 5, &mut acked).await;
    drop(wal);
    assert!(blocked.durable().await.is_err(), "an append waiting in a dropped WAL was acknowledged");
    let (_wal, recovered) = reopen_when_unlocked(dir.path(), 3).await;
    assert_recovered_after_trim(&recovered, &acked, trimmed, "after the trim released the appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_wal_dropped_without_close_keeps_its_directory_until_drained() {
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_file_wal(dir.path(), 16);
        let pending: Vec<_> =
            (0..300).map(|i| record(1, i, 2000)).map(|r| (wal.append(r.clone()).unwrap(), r)).collect();
        drop(wal);
        // The new open must not recover segments the dropped WAL's writer is still filling.
        let (wal, recovered) = reopen_when_unlocked(dir.path(), 16).await;
        let mut acked = Vec::new();
        for (pending, record) in pending {
            let position = pending.position;
            if pending.durable().await.is_ok() {
                acked.push((position, record));
            }
        }
        assert_recovered(&recovered, &acked, &format!("attempt {attempt}: the reopen after a drop"));
        acked.extend(append_all(&wal, (0..50).map(|i| record(2, i, 700))).await);
        wal.close().await.unwrap();
        drop(wal);
        let (_wal, recovered) = open_file_wal(dir.path(), 16);
        assert_recovered(&recovered, &acked, &format!("attempt {attempt}: both incarnations"));
    }
}

#[tokio::test]
async fn file_wal_second_open_of_a_directory_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_file_wal(dir.path(), 4);
    let acked = append_all(&wal, [record(1, 0, 10)]).await;
    match FileWal::open(file_config(dir.path(), 4)).map(|(_, r)| r.len()) {
        Err(Error::Fenced(_)) => {}
        other => panic!("a second open while the first is live gave {other:?}, expected Err(Fenced)"),
    }
    // The refused open left the first WAL working and the directory intact.
    let more = append_all(&wal, [record(1, 1, 10)]).await;
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, recovered) = open_file_wal(dir.path(), 4);
    assert_recovered(&recovered, &[acked, more].concat(), "after the first WAL closed");
}

#[tokio::test]
async fn file_wal_rejects_a_record_larger_than_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_file_wal(dir.path(), 4);
    let largest = SEGMENT as usize - PADDING_FRAME - FRAME_HEADER_LEN - DATA_BODY_FIXED;
    for len in [largest + 1, SEGMENT as usize, 2 * SEGMENT as usize] {
        match wal.append(record(5, 0, len)) {
            Err(Error::RecordTooLarge { stream_id: 5, bytes, limit }) => {
                assert!(bytes > limit && limit == SEGMENT - PADDING_FRAME as u64, "{bytes} {limit}")
            }
            other => panic!("a {len}-byte payload gave {other:?}, expected Err(RecordTooLarge)"),
        }
    }
    // The largest record that fits is accepted, twice: the second rolls to a new segment.
    let acked = append_all(&wal, [record(5, 1, largest), record(5, 2, largest)]).await;
    assert_eq!(acked[1].0, SEGMENT, "the second full-segment record starts the next segment");
    wal.close().await.unwrap();
    drop(wal);
    let (_wal, recovered) = open_file_wal(dir.path(), 4);
    assert_recovered(&recovered, &acked, "segment-sized records");
}

// ---------------------------------------------------------------- S3 WAL bodies

const NODE: u64 = 1;

/// Group commits sealed by a short delay or at 64 KiB.
fn timed(node_id: u64) -> S3WalConfig {
    S3WalConfig { max_batch_bytes: 64 << 10, max_batch_delay: Duration::from_millis(5), ..S3WalConfig::new(node_id) }
}

/// Group commits sealed only by size: each [`round`] of records fills exactly one object.
fn sized(node_id: u64) -> S3WalConfig {
    // Sealed by size only, so object boundaries are known.
    S3WalConfig {
        max_batch_bytes: 4096,
        max_batch_delay: Duration::from_secs(3600),
        seal_when_idle: false,
        ..S3WalConfig::new(node_id)
    }
}

/// Four 1000-byte records: 4 x 1049 frame bytes pass 4096 with the fourth, not before.
fn round(stream_id: u64, n: u64) -> Vec<WalRecord> {
    (0..4).map(|i| record(stream_id, n * 4 + i, 1000)).collect()
}

async fn open_s3(store: &SharedStore, config: S3WalConfig) -> (S3Wal, Vec<RecoveredRecord>) {
    S3Wal::open(store.clone(), config, clock::system()).await.unwrap()
}

fn data_key(epoch: u64, seq: u64) -> String {
    format!("wal/{NODE}/{epoch:010}/{seq:020}")
}

/// Sequence numbers of the objects (data or fence) of `epoch`.
async fn seqs(store: &SharedStore, epoch: u64) -> Vec<u64> {
    let prefix = format!("wal/{NODE}/{epoch:010}/");
    let listed = store.list(&prefix).await.unwrap();
    listed.iter().filter_map(|m| m.key[prefix.len()..].parse().ok()).collect()
}

/// Appends one record on a WAL that should be fenced; asserts that it is refused or fails.
async fn assert_fenced(wal: &S3Wal, what: &str) {
    let result = match wal.append(record(77, 0, 100)) {
        Ok(pending) => pending.durable().await,
        Err(e) => Err(e),
    };
    assert!(matches!(result, Err(Error::Fenced(_) | Error::Failed(_))), "{what}: an append gave {result:?}");
}

async fn group_commit_batches_concurrent_appends(store: SharedStore) {
    const STREAMS: u64 = 20;
    const PER_STREAM: u64 = 10;
    // Uploads take as long as a real PUT, so appends arriving while one is in flight batch up
    // (with an instant store the writer may seal every append alone: batching is not owed then).
    let slow = Arc::new(FaultInjector::new(store.clone(), 10));
    let put_latency = FaultRule::new(Fault::Latency(Duration::from_millis(30)), Trigger::Always).on(Op::PutIfAbsent);
    slow.add_rule(put_latency.under("wal/"));
    let metrics = ObjectStoreMetrics::unregistered();
    let counted: SharedStore = Arc::new(MetricsStore::new(slow, metrics.clone()));
    let config = S3WalConfig { max_batch_delay: Duration::from_millis(50), ..timed(NODE) };
    let (wal, recovered) = open_s3(&counted, config).await;
    assert!(recovered.is_empty());
    let creates_before = metrics.request_count("put_if_absent");
    let wal = Arc::new(wal);
    let start = Arc::new(tokio::sync::Barrier::new(STREAMS as usize));
    let tasks: Vec<_> = (0..STREAMS)
        .map(|stream| {
            let (wal, start) = (wal.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let records =
                    (0..PER_STREAM).map(|seq| record(stream, seq, 200 + ((stream * 7 + seq * 131) % 1000) as usize));
                append_all(&*wal, records).await
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let objects = metrics.request_count("put_if_absent") - creates_before;
    let appends = STREAMS * PER_STREAM;
    assert!(
        (1..=appends / 10).contains(&objects),
        "{appends} concurrent appends were written as {objects} objects; group commit should batch them"
    );
    wal.close().await.unwrap();
    let (_wal, recovered) = open_s3(&store, timed(NODE)).await;
    assert_recovered(&recovered, &acked, "after reopen");
}

async fn a_new_incarnation_fences_the_old_writer(store: SharedStore) {
    let (a, _) = open_s3(&store, timed(NODE)).await;
    let a_acked = append_all(&a, (0..8).map(|i| record(1, i, 300))).await;
    let (b, recovered) = open_s3(&store, timed(NODE)).await;
    assert_recovered(&recovered, &a_acked, "B recovering A");
    assert_fenced(&a, "A after B opened").await;
    assert_fenced(&a, "A, again").await;

    let b_acked = append_all(&b, (0..8).map(|i| record(2, i, 300))).await;
    let (_c, recovered) = open_s3(&store, timed(NODE)).await;
    assert_recovered(&recovered, &[a_acked, b_acked].concat(), "C recovering A and B");
    assert_fenced(&b, "B after C opened").await;
}

async fn trim_deletes_old_objects_but_keeps_the_newest(store: SharedStore) {
    let (a, _) = open_s3(&store, sized(NODE)).await;
    let mut acked = Vec::new();
    for n in 0..6 {
        acked.extend(append_all(&a, round(1, n)).await);
    }
    assert_eq!(seqs(&store, a.epoch()).await, [0, 1, 2, 3, 4, 5], "one object per round");
    // Into the fourth object: the three before it go, the one holding the trim point stays.
    a.trim(acked[13].0).await.unwrap();
    assert_eq!(seqs(&store, a.epoch()).await, [3, 4, 5]);
    a.trim(acked[23].0).await.unwrap();
    assert_eq!(seqs(&store, a.epoch()).await, [5], "the newest object of the live epoch is kept");
    a.close().await.unwrap();

    // Only the kept object's records come back; nothing above the trim point was lost.
    let (b, recovered) = open_s3(&store, sized(NODE)).await;
    assert_recovered(&recovered, &acked[20..], "after trimming everything");
    b.trim(recovered.last().unwrap().position).await.unwrap();
    let b_acked = append_all(&b, round(2, 0)).await;
    b.trim(b_acked[1].0).await.unwrap();
    assert_eq!(seqs(&store, b.epoch()).await, [0], "a trim inside the only object keeps it");
    b.close().await.unwrap();
    let (_c, recovered) = open_s3(&store, sized(NODE)).await;
    assert_recovered_after_trim(&recovered, &b_acked, b_acked[1].0, "B's records after B's trim");
    assert!(recovered.iter().all(|r| r.position > acked[23].0), "A's trimmed records came back");
}

async fn positions_keep_increasing_across_idle_restarts(store: SharedStore) {
    let (a, _) = open_s3(&store, sized(NODE)).await;
    let a_acked = append_all(&a, round(1, 0)).await;
    a.close().await.unwrap();
    // B persists what it recovered elsewhere, trims it all and stops without appending.
    let (b, recovered) = open_s3(&store, sized(NODE)).await;
    assert_recovered(&recovered, &a_acked, "B recovering A");
    b.trim(recovered.last().unwrap().position).await.unwrap();
    b.close().await.unwrap();
    let (c, recovered) = open_s3(&store, sized(NODE)).await;
    assert!(recovered.is_empty(), "trimmed records came back: {} of them", recovered.len());
    let c_acked = append_all(&c, round(3, 0)).await;
    let last_a = a_acked.last().unwrap().0;
    assert!(c_acked[0].0 > last_a, "C appended at position {} after A had reached {last_a}", c_acked[0].0);
}

async fn a_torn_object_is_never_recovered(store: SharedStore) {
    let faults = Arc::new(FaultInjector::new(store.clone(), 11));
    // Creates under wal/: the epoch's start marker, then one per object; the third object tears.
    let torn = FaultRule::new(Fault::TornWrite { keep_fraction: 0.5 }, Trigger::Nth(3));
    faults.add_rule(torn.on(Op::PutIfAbsent).under("wal/"));
    let (a, _) = open_s3(&(faults.clone() as SharedStore), sized(NODE)).await;
    let mut acked = append_all(&a, round(1, 0)).await;
    acked.extend(append_all(&a, round(1, 1)).await);
    let pending: Vec<_> = round(1, 2).into_iter().map(|r| a.append(r).unwrap()).collect();
    for p in pending {
        assert!(p.durable().await.is_err(), "an append in the torn object was acknowledged");
    }
    assert!(faults.has_crashed());
    assert!(store.head(&data_key(a.epoch(), 2)).await.unwrap().is_some(), "the torn object should be in the store");

    let (b, recovered) = open_s3(&store, sized(NODE)).await;
    assert_recovered(&recovered, &acked, "after the tear");
    acked.extend(append_all(&b, round(2, 0)).await);
    b.close().await.unwrap();
    let (_c, recovered) = open_s3(&store, sized(NODE)).await;
    assert_recovered(&recovered, &acked, "two incarnations after the tear");
}

async fn transient_errors_are_retried_without_duplicates(store: SharedStore) {
    let faults = Arc::new(FaultInjector::new(store.clone(), 12));
    // The first object lands but its creator hears a timeout, and retries (the ambiguous case).
    let ambiguous = FaultRule::new(Fault::ErrorAfterApply, Trigger::Nth(0)).on(Op::PutIfAbsent);
    faults.add_rule(ambiguous.under(format!("wal/{NODE}/0000000001/0")));
    let flaky = FaultRule::new(Fault::Error { retryable: true }, Trigger::Probability(0.3)).on(Op::PutIfAbsent);
    faults.add_rule(flaky.under("wal/"));
    let metrics = ObjectStoreMetrics::unregistered();
    let counted: SharedStore = Arc::new(MetricsStore::new(faults, metrics.clone()));
    let retries =
        RetryConfig { max_attempts: 20, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    let retrying: SharedStore = Arc::new(RetryStore::new(counted, retries));

    let (wal, _) = open_s3(&retrying, timed(NODE)).await;
    assert_eq!(wal.epoch(), 1, "the ambiguous-create rule names epoch 1's objects");
    let wal = Arc::new(wal);
    let acked = append_concurrently(wal.clone(), 8, 6, |_, _| 500).await;
    wal.close().await.unwrap();
    let objects = seqs(&store, 1).await.len() as u64;
    let creates = metrics.request_count("put_if_absent");
    assert!(creates > objects + 1, "{creates} creates for {objects} objects and a start marker: no fault was retried");
    let (_wal, recovered) = open_s3(&store, timed(NODE)).await;
    assert_recovered(&recovered, &acked, "after retried creates");
}

async fn a_lost_first_object_hides_the_objects_after_it(store: SharedStore) {
    // The epoch's first object fails for good, slowly; meanwhile a second batch is ready.
    let first_object = data_key(1, 0);
    let failing = Arc::new(FaultInjector::new(store.clone(), 13));
    let lost = FaultRule::new(Fault::Error { retryable: false }, Trigger::Nth(0)).on(Op::PutIfAbsent);
    failing.add_rule(lost.under(first_object.clone()));
    let slow = Arc::new(FaultInjector::new(failing, 14));
    let delay = FaultRule::new(Fault::Latency(Duration::from_millis(300)), Trigger::Nth(0)).on(Op::PutIfAbsent);
    slow.add_rule(delay.under(first_object));
    let (wal, _) = open_s3(&(slow as SharedStore), timed(NODE)).await;
    assert_eq!(wal.epoch(), 1);
    let first = wal.append(record(1, 0, 100)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = wal.append(record(1, 1, 100)).unwrap();
    let second_position = second.position;
    assert!(first.durable().await.is_err(), "the failed object's append was acknowledged");
    assert!(second.durable().await.is_err(), "an append after a failed one was acknowledged");
    let _ = wal.close().await;

    // The second record was never acknowledged and follows a lost one: bringing it back would
    // hand the stream layer a gap.
    let (_wal, recovered) = open_s3(&store, timed(NODE)).await;
    assert!(
        recovered.iter().all(|r| r.position != second_position),
        "recovery returned position {second_position}, which follows the lost first object"
    );
}
