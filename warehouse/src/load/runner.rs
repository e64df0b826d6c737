//! Runs one routine-load job on this node: fetchers per partition feed a batch; the batch is
//! converted and committed together with the next offsets, once `max_batch_interval` has
//! passed since its first message or once it holds `max_batch_rows` messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::record::RecordAndOffset;
use tokio::sync::{mpsc, watch};

use super::convert::Converter;
use super::format::Decoder;
use super::job::{progress_key, Format, JobState, LoadJob, Progress, StartAt};
use super::source::{self, SourceError};
use super::{conflict, to_json, JobLabels, Live, RoutineLoads};
use crate::table::{Attach, Warehouse, WhError, Write};

/// Longest wait for one fetch (it long-polls for at most `fetch.wait.max.ms`, 500 ms here).
const FETCH_TIMEOUT: Duration = Duration::from_secs(8);

/// How a run ended.
enum Outcome {
    /// Stopped from outside, or the job is no longer ours: nothing to record.
    Stopped,
    Pause(String),
    Cancel(String),
    /// Something transient failed: run again from the committed offsets after a pause.
    Retry(String),
}

/// What a fetcher sends.
enum Fetched {
    Records { partition: i32, records: Vec<RecordAndOffset>, high_watermark: i64 },
    Failed(SourceError),
    Recovered,
}

struct Batch {
    records: Vec<(i32, RecordAndOffset)>,
    next: BTreeMap<i32, i64>,
    bytes: u64,
    started: Option<Instant>,
}

pub(super) async fn run(loads: Arc<RoutineLoads>, job: LoadJob, live: Arc<Live>, stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    let mut stop = stop;
    loop {
        let outcome = run_once(&loads, &job, &live, stop.clone()).await;
        match outcome {
            Outcome::Stopped => return,
            Outcome::Pause(reason) => return loads.set_state(&job, JobState::Paused, reason).await,
            Outcome::Cancel(reason) => return loads.set_state(&job, JobState::Cancelled, reason).await,
            Outcome::Retry(reason) => {
                tracing::warn!(db = %job.db, job = %job.name, %reason, "routine load retrying");
                *live.source_error.lock() = Some(reason);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn still_ours(w: &Warehouse, job: &LoadJob, node: &str, progress: &Option<String>) -> Result<(), WhError> {
    let current =
        w.kv_get(&super::job::job_key(&job.db, &job.name)).and_then(|v| serde_json::from_str::<LoadJob>(&v).ok());
    match current {
        Some(j) if j.id == job.id && j.state == JobState::Running && j.owner.as_deref() == Some(node) => {}
        _ => return Err(conflict("the job was paused, stopped or taken over")),
    }
    if &w.kv_get(&progress_key(&job.db, &job.name)) != progress {
        return Err(conflict("the job's progress moved under this runner"));
    }
    Ok(())
}

async fn run_once(
    loads: &Arc<RoutineLoads>,
    job: &LoadJob,
    live: &Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let w = &loads.warehouse;
    let spec = &job.spec;
    let labels = JobLabels { db: job.db.clone(), job: job.name.clone() };
    let Some(meta) = w.table(&job.db, &job.table) else {
        return Outcome::Cancel(format!("table '{}.{}' no longer exists", job.db, job.table));
    };
    let converter =
        match Converter::new(&meta, spec.columns.as_deref(), spec.where_sql.as_deref(), spec.format == Format::Json) {
            Ok(c) => c,
            Err(e) => return Outcome::Pause(format!("the job no longer fits its table: {e}")),
        };
    let decoder = match Decoder::new(spec, converter.source_columns()) {
        Ok(d) => d,
        Err(e) => return Outcome::Pause(e.to_string()),
    };
    let source_failed = |e: SourceError| match e {
        SourceError::Fatal(m) => Outcome::Pause(m),
        SourceError::Transient(m) => Outcome::Retry(m),
    };
    let client = match source::connect(spec).await {
        Ok(c) => c,
        Err(e) => return source_failed(e),
    };
    let partitions: Vec<i32> = match &spec.partitions {
        Some(ps) => ps.iter().map(|(p, _)| *p).collect(),
        None => match source::partitions(&client, &spec.topic).await {
            Ok(ps) => ps,
            Err(e) => return source_failed(e),
        },
    };
    let mut committed_json = w.kv_get(&progress_key(&job.db, &job.name));
    let mut progress = committed_json
        .as_deref()
        .and_then(|v| serde_json::from_str::<Progress>(v).ok())
        .filter(|p| p.job_id == job.id)
        .unwrap_or(Progress { job_id: job.id, ..Progress::default() });

    // One fetcher per partition; partitions without a committed offset (new ones) start at
    // their beginning so nothing produced to them is skipped.
    let (tx, mut rx) = mpsc::channel::<Fetched>(4 * partitions.len().max(1));
    let mut fetchers = tokio::task::JoinSet::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for p in partitions {
        let pc = match source::partition(&client, &spec.topic, p).await {
            Ok(pc) => pc,
            Err(e) => return source_failed(e),
        };
        let start = match progress.offsets.get(&p) {
            Some(o) => *o,
            None => match source::resolve(&pc, StartAt::Beginning).await {
                Ok(o) => o,
                Err(e) => return source_failed(e),
            },
        };
        next.insert(p, start);
        let (tx, max_bytes, wait) = (tx.clone(), spec.fetch_max_bytes, spec.fetch_wait_ms.clamp(10, 500));
        fetchers.spawn(async move {
            let mut offset = start;
            let mut failing = false;
            loop {
                // The client retries connection failures on its own; a bound on each fetch
                // makes an outage visible instead of a silent wait.
                let fetched =
                    match tokio::time::timeout(FETCH_TIMEOUT, source::fetch(&pc, offset, max_bytes, wait)).await {
                        Ok(r) => r,
                        Err(_) => Err(SourceError::Transient(format!(
                            "partition {p}: no answer from Kafka for {} s (broker down or unreachable?)",
                            FETCH_TIMEOUT.as_secs()
                        ))),
                    };
                match fetched {
                    Ok((records, high_watermark)) => {
                        if failing {
                            failing = false;
                            let _ = tx.send(Fetched::Recovered).await;
                        }
                        if let Some(last) = records.last() {
                            offset = last.offset + 1;
                        }
                        if tx.send(Fetched::Records { partition: p, records, high_watermark }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        failing = true;
                        let fatal = !source::is_retriable(&e);
                        if tx.send(Fetched::Failed(e)).await.is_err() || fatal {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    progress.offsets.extend(next.iter().map(|(p, o)| (*p, *o)));
    *live.source_error.lock() = None;
    let interval = Duration::from_millis(spec.max_batch_interval_ms);
    let mut batch = Batch { records: Vec::new(), next: BTreeMap::new(), bytes: 0, started: None };
    loop {
        let deadline = batch.started.map(|t| t + interval);
        let got = tokio::select! {
            m = rx.recv() => m,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d.into()).await, None => std::future::pending().await } } => None,
            _ = stop.changed() => return Outcome::Stopped,
        };
        match got {
            Some(Fetched::Records { partition, records, high_watermark }) => {
                live.latest.lock().insert(partition, high_watermark);
                if let Some(last) = records.last() {
                    batch.next.insert(partition, last.offset + 1);
                    batch.started.get_or_insert_with(Instant::now);
                }
                let lag: i64 = {
                    let latest = live.latest.lock();
                    latest
                        .iter()
                        .map(|(p, hw)| {
                            (hw - batch.next.get(p).or(progress.offsets.get(p)).copied().unwrap_or(*hw)).max(0)
                        })
                        .sum()
                };
                loads.metrics.lag.get_or_create(&labels).set(lag);
                for r in records {
                    batch.bytes += r.record.approximate_size() as u64;
                    batch.records.push((partition, r));
                }
            }
            Some(Fetched::Failed(SourceError::Fatal(m))) => return Outcome::Pause(m),
            Some(Fetched::Failed(SourceError::Transient(m))) => *live.source_error.lock() = Some(m),
            Some(Fetched::Recovered) => *live.source_error.lock() = None,
            None if deadline.is_none() => return Outcome::Retry("every fetcher ended".into()),
            None => {}
        }
        let due =
            batch.started.is_some_and(|t| t.elapsed() >= interval) || batch.records.len() as u64 >= spec.max_batch_rows;
        if !due {
            continue;
        }
        match commit(loads, job, live, &labels, &decoder, &converter, &mut batch, &mut progress, &mut committed_json)
            .await
        {
            Ok(()) => {}
            Err(outcome) => return outcome,
        }
    }
}

/// Converts and commits a batch with its offsets; on success resets the batch.
#[allow(clippy::too_many_arguments)]
async fn commit(
    loads: &Arc<RoutineLoads>,
    job: &LoadJob,
    live: &Live,
    labels: &JobLabels,
    decoder: &Decoder,
    converter: &Converter,
    batch: &mut Batch,
    progress: &mut Progress,
    committed_json: &mut Option<String>,
) -> Result<(), Outcome> {
    let started = Instant::now();
    let w = &loads.warehouse;
    let spec = &job.spec;
    let mut raw = Vec::new();
    let mut message_errors = Vec::new();
    let mut oldest_ms = i64::MAX;
    for (p, r) in &batch.records {
        oldest_ms = oldest_ms.min(r.record.timestamp.timestamp_millis());
        let (rows, errors) = decoder.decode(r.record.value.as_deref());
        raw.extend(rows);
        message_errors.extend(errors.into_iter().map(|e| format!("partition {p} offset {}: {e}", r.offset)));
    }
    let total = raw.len() as u64 + message_errors.len() as u64;
    let mut converted = match converter.convert(raw).await {
        Ok(c) => c,
        Err(e @ WhError::Invalid(_)) => return Err(Outcome::Pause(format!("cannot convert rows: {e}"))),
        Err(e) => return Err(Outcome::Retry(e.to_string())),
    };
    converted.error_rows += message_errors.len() as u64;
    let mut samples = message_errors;
    samples.append(&mut converted.error_samples);

    let mut next = progress.clone();
    next.offsets.extend(batch.next.iter().map(|(p, o)| (*p, *o)));
    next.window_rows += total;
    next.window_errors += converted.error_rows;
    if next.window_errors > spec.max_error_number {
        let first: Vec<String> = samples.iter().take(3).cloned().collect();
        return Err(Outcome::Pause(format!(
            "too many error rows: {} in the last {} rows exceed max_error_number {}; e.g. {}",
            next.window_errors,
            next.window_rows,
            spec.max_error_number,
            first.join(" | ")
        )));
    }
    if next.window_rows >= spec.max_batch_rows.saturating_mul(10) {
        next.window_rows = 0;
        next.window_errors = 0;
    }
    for s in samples {
        next.add_error_sample(s);
    }
    let s = &mut next.stats;
    s.received_bytes += batch.bytes;
    s.total_rows += total;
    s.loaded_rows += converted.loaded;
    s.error_rows += converted.error_rows;
    s.unselected_rows += converted.unselected;
    s.committed_tasks += 1;
    s.task_execute_ms += started.elapsed().as_millis() as u64;
    next.committed_ms = automq_storage::clock::system().now_ms();
    next.latest = live.latest.lock().clone();
    let next_json = to_json(&next).map_err(|e| Outcome::Retry(e.to_string()))?;

    let expected = committed_json.clone();
    let node = loads.node.clone();
    let job_c = job.clone();
    let check = move |w: &Warehouse| still_ours(w, &job_c, &node, &expected);
    let attach = Attach {
        records: vec![(progress_key(&job.db, &job.name), next_json.clone())],
        reads: vec![super::job::job_key(&job.db, &job.name), progress_key(&job.db, &job.name)],
        check: &check,
    };
    let write = Write::Changes {
        upserts: std::mem::take(&mut converted.upserts),
        deletes: std::mem::take(&mut converted.deletes),
    };
    match w.write_attached(&job.db, &job.table, write, Some(&attach)).await {
        Ok(_) => {}
        Err(WhError::UnknownTable(..)) => {
            return Err(Outcome::Cancel(format!("table '{}.{}' no longer exists", job.db, job.table)))
        }
        Err(WhError::UnknownDatabase(_)) => {
            return Err(Outcome::Cancel(format!("database '{}' no longer exists", job.db)))
        }
        Err(WhError::Conflict(m)) => {
            tracing::info!(db = %job.db, job = %job.name, reason = %m, "routine load batch abandoned");
            return Err(Outcome::Stopped);
        }
        Err(e @ WhError::Invalid(_)) => return Err(Outcome::Pause(format!("cannot load the batch: {e}"))),
        Err(e) => return Err(Outcome::Retry(format!("commit failed: {e}"))),
    }
    let m = &loads.metrics;
    m.rows_loaded.get_or_create(labels).inc_by(converted.loaded);
    m.rows_error.get_or_create(labels).inc_by(converted.error_rows);
    m.rows_unselected.get_or_create(labels).inc_by(converted.unselected);
    m.bytes.get_or_create(labels).inc_by(batch.bytes);
    m.commits.get_or_create(labels).inc();
    m.commit_seconds.get_or_create(labels).observe(started.elapsed().as_secs_f64());
    if oldest_ms != i64::MAX {
        let age = next.committed_ms as i64 - oldest_ms;
        if age >= 0 {
            m.freshness_seconds.get_or_create(labels).observe(age as f64 / 1000.0);
        }
    }
    *progress = next;
    *committed_json = Some(next_json);
    *batch = Batch { records: Vec::new(), next: BTreeMap::new(), bytes: 0, started: None };
    Ok(())
}
