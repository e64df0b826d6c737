//! Routine load: continuous, exactly-once ingestion from Kafka topics into tables, driven by
//! StarRocks's statements (`CREATE / ALTER / PAUSE / RESUME / STOP / SHOW ROUTINE LOAD`).
//!
//! A job lives in the catalog, so every query node sharing the bucket sees it. One node runs
//! it at a time: the one holding its lease (renewed every few seconds, taken over when it
//! lapses). The runner fetches from every partition with a real Kafka client, and every
//! `max_batch_interval` (or `max_batch_rows`) converts what it has and commits the rows
//! *together with* the next offsets in one catalog record; before each commit it checks that
//! the stored progress is the one it started from and that the job is still its to run. A
//! crash anywhere therefore loses nothing and loads nothing twice: a restarted runner starts
//! from the committed offsets.

pub mod convert;
pub mod format;
pub mod job;
pub mod source;
pub mod stmt;

mod runner;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{watch, Notify};

use crate::table::{Warehouse, WhError};
use job::{job_key, progress_key, JobState, LoadJob, LoadSpec, Progress, StartAt, JOBS_PREFIX};
use stmt::{AlterLoad, Control, CreateLoad};

type R<T> = Result<T, WhError>;

/// How long a node's claim on a job holds without renewal.
const LEASE: Duration = Duration::from_secs(10);
/// How often the supervisor looks at the jobs.
const TICK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub db: String,
    pub job: String,
}

/// Per-job metrics.
#[derive(Debug, Clone)]
pub struct LoadMetrics {
    pub rows_loaded: Family<JobLabels, Counter>,
    pub rows_error: Family<JobLabels, Counter>,
    pub rows_unselected: Family<JobLabels, Counter>,
    pub bytes: Family<JobLabels, Counter>,
    pub commits: Family<JobLabels, Counter>,
    pub lag: Family<JobLabels, Gauge>,
    pub commit_seconds: Family<JobLabels, Histogram>,
    pub freshness_seconds: Family<JobLabels, Histogram>,
}

impl Default for LoadMetrics {
    fn default() -> Self {
        LoadMetrics {
            rows_loaded: Family::default(),
            rows_error: Family::default(),
            rows_unselected: Family::default(),
            bytes: Family::default(),
            commits: Family::default(),
            lag: Family::default(),
            commit_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            freshness_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
        }
    }
}

impl LoadMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "routine_load_rows_loaded",
            "Rows committed to tables by routine loads",
            self.rows_loaded.clone(),
        );
        registry.register(
            "routine_load_rows_error",
            "Rows refused by routine loads (bad data)",
            self.rows_error.clone(),
        );
        registry.register(
            "routine_load_rows_unselected",
            "Rows left out by a routine load's WHERE",
            self.rows_unselected.clone(),
        );
        registry.register("routine_load_bytes", "Message bytes consumed by routine loads", self.bytes.clone());
        registry.register("routine_load_commits", "Batches committed by routine loads", self.commits.clone());
        registry.register(
            "routine_load_lag_messages",
            "Messages not yet loaded (high watermark minus next offset)",
            self.lag.clone(),
        );
        registry.register(
            "routine_load_commit_seconds",
            "Time to convert and commit a batch",
            self.commit_seconds.clone(),
        );
        registry.register(
            "routine_load_freshness_seconds",
            "Message timestamp to queryable, per committed batch (oldest message)",
            self.freshness_seconds.clone(),
        );
    }
}

/// What the node running a job knows beyond the catalog (shown by SHOW ROUTINE LOAD).
#[derive(Debug, Default)]
pub struct Live {
    pub latest: parking_lot::Mutex<BTreeMap<i32, i64>>,
    pub source_error: parking_lot::Mutex<Option<String>>,
}

struct Running {
    job_id: u64,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
    live: Arc<Live>,
}

/// The routine loads of a query node.
pub struct RoutineLoads {
    warehouse: Arc<Warehouse>,
    node: String,
    running: parking_lot::Mutex<HashMap<String, Running>>,
    wake: Notify,
    pub metrics: LoadMetrics,
    /// `kafka_broker_list` for jobs created without one (`--default-kafka-brokers`).
    default_brokers: parking_lot::Mutex<Option<String>>,
}

impl std::fmt::Debug for RoutineLoads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutineLoads").field("node", &self.node).finish_non_exhaustive()
    }
}

fn conflict(msg: impl Into<String>) -> WhError {
    WhError::Conflict(msg.into())
}

impl RoutineLoads {
    pub fn new(warehouse: Arc<Warehouse>, node: impl Into<String>) -> Arc<Self> {
        Arc::new(RoutineLoads {
            warehouse,
            node: node.into(),
            running: parking_lot::Mutex::new(HashMap::new()),
            wake: Notify::new(),
            metrics: LoadMetrics::default(),
            default_brokers: parking_lot::Mutex::new(None),
        })
    }

    /// Sets the `kafka_broker_list` of jobs created without one (empty: none).
    pub fn set_default_brokers(&self, brokers: &str) {
        let brokers = brokers.trim();
        *self.default_brokers.lock() = (!brokers.is_empty()).then(|| brokers.to_string());
    }

    pub fn jobs(&self) -> Vec<LoadJob> {
        self.warehouse
            .kv_scan(JOBS_PREFIX)
            .into_iter()
            .filter_map(|(k, v)| match serde_json::from_str::<LoadJob>(&v) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::error!(key = k, error = %e, "unreadable routine load job");
                    None
                }
            })
            .collect()
    }

    pub fn job(&self, db: &str, name: &str) -> Option<LoadJob> {
        self.warehouse.kv_get(&job_key(db, name)).and_then(|v| serde_json::from_str(&v).ok())
    }

    fn progress(&self, job: &LoadJob) -> Option<Progress> {
        self.warehouse
            .kv_get(&progress_key(&job.db, &job.name))
            .and_then(|v| serde_json::from_str::<Progress>(&v).ok())
            .filter(|p| p.job_id == job.id)
    }

    /// `CREATE ROUTINE LOAD`: checks the table, the columns and the source (topic exists,
    /// starting offsets resolved now, so a restart before the first batch starts from the same
    /// place), then stores the job.
    pub async fn create(&self, db: &str, mut c: CreateLoad, sql: &str) -> R<()> {
        let meta =
            self.warehouse.table(db, &c.table).ok_or_else(|| WhError::UnknownTable(db.to_string(), c.table.clone()))?;
        if let Some(brokers) = self.default_brokers.lock().clone() {
            c.source.entry("kafka_broker_list".to_string()).or_insert(brokers);
        }
        let spec = LoadSpec::new(&c.clauses, &c.properties, &c.source)?;
        let converter = convert::Converter::new(
            &meta,
            spec.columns.as_deref(),
            spec.where_sql.as_deref(),
            spec.format == job::Format::Json,
        )?;
        converter.validate().await?;
        format::Decoder::new(&spec, converter.source_columns())?;
        if let Some(existing) = self.job(db, &c.name) {
            if !existing.state.is_final() {
                return Err(WhError::Invalid(format!(
                    "routine load job '{}' already exists in '{db}' (state {}); STOP it first",
                    c.name,
                    existing.state.as_str()
                )));
            }
        }
        let offsets = self.resolve_offsets(&spec, None).await?;
        let now = automq_storage::clock::system().now_ms();
        let job = LoadJob {
            id: now * 1000 + rand::random::<u64>() % 1000,
            name: c.name.clone(),
            db: db.to_string(),
            table: meta.name.clone(),
            spec,
            state: JobState::NeedSchedule,
            reason: String::new(),
            created_ms: now,
            paused_ms: None,
            end_ms: None,
            owner: None,
            lease_until_ms: 0,
            sql: sql.trim().to_string(),
            source_error: None,
        };
        let progress = Progress { job_id: job.id, offsets, ..Progress::default() };
        let job_json = to_json(&job)?;
        let key = job_key(db, &c.name);
        let before = self.warehouse.kv_get(&key);
        self.warehouse
            .kv_commit(
                vec![(key.clone(), job_json), (progress_key(db, &c.name), to_json(&progress)?)],
                Vec::new(),
                vec![(key, before)],
            )
            .await
            .map_err(|e| match e {
                WhError::Conflict(_) => {
                    WhError::Invalid(format!("routine load job '{}' was created concurrently", c.name))
                }
                e => e,
            })?;
        tracing::info!(db, job = %c.name, table = %job.table, topic = %job.spec.topic, "routine load created");
        self.wake.notify_one();
        Ok(())
    }

    /// Starting offsets of the job's partitions (explicit ones, or every partition of the topic
    /// at the default starting point). `current`: offsets to keep where not overridden.
    async fn resolve_offsets(&self, spec: &LoadSpec, current: Option<&BTreeMap<i32, i64>>) -> R<BTreeMap<i32, i64>> {
        let source_err = |e: source::SourceError| WhError::Invalid(e.message().to_string());
        let client = source::connect(spec).await.map_err(source_err)?;
        let all = source::partitions(&client, &spec.topic).await.map_err(source_err)?;
        let wanted: Vec<(i32, StartAt)> = match &spec.partitions {
            Some(ps) => {
                for (p, _) in ps {
                    if !all.contains(p) {
                        return Err(WhError::Invalid(format!("topic '{}' has no partition {p}", spec.topic)));
                    }
                }
                ps.clone()
            }
            None => all.iter().map(|p| (*p, spec.default_offset)).collect(),
        };
        let mut out = BTreeMap::new();
        for (p, at) in wanted {
            if let (Some(cur), None) = (current.and_then(|c| c.get(&p)), spec.partitions.as_ref()) {
                out.insert(p, *cur);
                continue;
            }
            let pc = source::partition(&client, &spec.topic, p).await.map_err(source_err)?;
            out.insert(p, source::resolve(&pc, at).await.map_err(source_err)?);
        }
        Ok(out)
    }

    /// Reads, changes and writes a job record (retrying if it changed meanwhile).
    async fn update_job(&self, db: &str, name: &str, change: impl Fn(&mut LoadJob) -> R<()>) -> R<LoadJob> {
        for _ in 0..16 {
            let key = job_key(db, name);
            let before = self
                .warehouse
                .kv_get(&key)
                .ok_or_else(|| WhError::Invalid(format!("routine load job '{name}' does not exist in '{db}'")))?;
            let mut job: LoadJob = serde_json::from_str(&before).map_err(|e| WhError::internal(e.to_string()))?;
            change(&mut job)?;
            let after = to_json(&job)?;
            if after == before {
                return Ok(job);
            }
            match self.warehouse.kv_commit(vec![(key.clone(), after)], Vec::new(), vec![(key, Some(before))]).await {
                Ok(()) => return Ok(job),
                Err(WhError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(WhError::Storage("too many concurrent changes to this routine load job; try again".into()))
    }

    /// `PAUSE / RESUME / STOP ROUTINE LOAD FOR job`.
    pub async fn control(&self, db: &str, name: &str, action: Control) -> R<()> {
        let now = automq_storage::clock::system().now_ms();
        self.update_job(db, name, |job| {
            if job.state.is_final() {
                return Err(WhError::Invalid(format!(
                    "routine load job '{name}' is {} and cannot be changed",
                    job.state.as_str()
                )));
            }
            match action {
                Control::Pause => {
                    if job.state != JobState::Paused {
                        job.state = JobState::Paused;
                        job.paused_ms = Some(now);
                        job.reason = "paused by user".into();
                    }
                }
                Control::Resume => {
                    if job.state == JobState::Paused {
                        job.state = JobState::NeedSchedule;
                        job.reason.clear();
                        job.source_error = None;
                    }
                }
                Control::Stop => {
                    job.state = JobState::Stopped;
                    job.end_ms = Some(now);
                    job.reason = "stopped by user".into();
                }
            }
            Ok(())
        })
        .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// `ALTER ROUTINE LOAD`: only on a paused job (as in StarRocks).
    pub async fn alter(&self, db: &str, a: AlterLoad) -> R<()> {
        // The values the change is computed from: it commits only if both are still there.
        let (jk, pk) = (job_key(db, &a.name), progress_key(db, &a.name));
        let expect = vec![(jk.clone(), self.warehouse.kv_get(&jk)), (pk.clone(), self.warehouse.kv_get(&pk))];
        let job: LoadJob = expect[0]
            .1
            .as_deref()
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| WhError::Invalid(format!("routine load job '{}' does not exist in '{db}'", a.name)))?;
        if job.state != JobState::Paused {
            return Err(WhError::Invalid(format!(
                "routine load job '{}' is {}: PAUSE it before ALTER",
                a.name,
                job.state.as_str()
            )));
        }
        let mut spec = job.spec.clone();
        spec.apply(&a.clauses, &a.properties, &a.source, false)?;
        let meta = self
            .warehouse
            .table(db, &job.table)
            .ok_or_else(|| WhError::UnknownTable(db.to_string(), job.table.clone()))?;
        let converter = convert::Converter::new(
            &meta,
            spec.columns.as_deref(),
            spec.where_sql.as_deref(),
            spec.format == job::Format::Json,
        )?;
        converter.validate().await?;
        format::Decoder::new(&spec, converter.source_columns())?;
        let offsets_changed = a.source.contains_key("kafka_offsets") || a.source.contains_key("kafka_partitions");
        let progress = expect[1]
            .1
            .as_deref()
            .and_then(|v| serde_json::from_str::<Progress>(v).ok())
            .filter(|p| p.job_id == job.id)
            .unwrap_or(Progress { job_id: job.id, ..Progress::default() });
        let mut puts = Vec::new();
        if offsets_changed {
            let mut next = progress.clone();
            next.offsets = self.resolve_offsets(&spec, Some(&progress.offsets)).await?;
            puts.push((progress_key(db, &a.name), to_json(&next)?));
        }
        let mut changed = job.clone();
        changed.spec = spec;
        puts.push((jk, to_json(&changed)?));
        self.warehouse.kv_commit(puts, Vec::new(), expect).await.map_err(|e| match e {
            WhError::Conflict(_) => WhError::Invalid("the job changed while being altered; try again".into()),
            e => e,
        })
    }

    /// Rows of `SHOW [ALL] ROUTINE LOAD`.
    pub fn show(&self, db: &str, name: Option<&str>, all: bool) -> (Vec<&'static str>, Vec<Vec<Option<String>>>) {
        let names = vec![
            "Id",
            "Name",
            "CreateTime",
            "PauseTime",
            "EndTime",
            "DbName",
            "TableName",
            "State",
            "DataSourceType",
            "CurrentTaskNum",
            "JobProperties",
            "DataSourceProperties",
            "CustomProperties",
            "Statistic",
            "Progress",
            "TimestampProgress",
            "ReasonOfStateChanged",
            "ErrorLogUrls",
            "TrackingSQL",
            "OtherMsg",
            "LatestSourcePosition",
            "Lag",
            "ErrorSamples",
            "Node",
        ];
        let mut jobs: Vec<LoadJob> = self
            .jobs()
            .into_iter()
            .filter(|j| j.db == db && name.is_none_or(|n| j.name.eq_ignore_ascii_case(n)))
            .filter(|j| all || name.is_some() || !j.state.is_final())
            .collect();
        jobs.sort_by_key(|j| j.created_ms);
        let running = self.running.lock();
        let rows = jobs
            .into_iter()
            .map(|job| {
                let progress = self.progress(&job).unwrap_or_default();
                let live = running.get(&job_key(&job.db, &job.name)).filter(|r| r.job_id == job.id).map(|r| r.live.clone());
                let mut latest = progress.latest.clone();
                let mut other = job.source_error.clone();
                if let Some(live) = &live {
                    latest.extend(live.latest.lock().iter().map(|(k, v)| (*k, *v)));
                    if let Some(e) = live.source_error.lock().clone() {
                        other = Some(e);
                    }
                }
                let lag: BTreeMap<String, i64> = progress
                    .offsets
                    .iter()
                    .map(|(p, next)| (p.to_string(), latest.get(p).map_or(0, |hw| (hw - next).max(0))))
                    .collect();
                let s = &progress.stats;
                let statistic = serde_json::json!({
                    "receivedBytes": s.received_bytes,
                    "totalRows": s.total_rows,
                    "loadedRows": s.loaded_rows,
                    "errorRows": s.error_rows,
                    "unselectedRows": s.unselected_rows,
                    "committedTaskNum": s.committed_tasks,
                    "abortedTaskNum": s.aborted_tasks,
                    "taskExecuteTimeMs": s.task_execute_ms,
                });
                // Progress shows the last consumed offset per partition, as StarRocks does.
                let shown: BTreeMap<String, String> = progress
                    .offsets
                    .iter()
                    .map(|(p, next)| (p.to_string(), if *next == 0 { "OFFSET_ZERO".into() } else { (next - 1).to_string() }))
                    .collect();
                let source_props = serde_json::json!({
                    "topic": job.spec.topic,
                    "currentKafkaPartitions": progress.offsets.keys().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                    "brokerList": job.spec.brokers.join(","),
                });
                let mut custom: serde_json::Map<String, serde_json::Value> = job
                    .spec
                    .client_properties
                    .iter()
                    .map(|(k, v)| {
                        let shown = if job::SECRET_PROPERTIES.contains(&k.as_str()) { "******" } else { v.as_str() };
                        (k.clone(), shown.into())
                    })
                    .collect();
                if let Some(g) = &job.spec.group_id {
                    custom.insert("group.id".into(), g.clone().into());
                }
                let current_tasks = if live.is_some() { job.spec.desired_concurrent_number.min(progress.offsets.len().max(1) as u32) } else { 0 };
                vec![
                    Some(job.id.to_string()),
                    Some(job.name.clone()),
                    Some(fmt_time(job.created_ms)),
                    job.paused_ms.map(fmt_time),
                    job.end_ms.map(fmt_time),
                    Some(job.db.clone()),
                    Some(job.table.clone()),
                    Some(job.state.as_str().to_string()),
                    Some("KAFKA".to_string()),
                    Some(current_tasks.to_string()),
                    Some(job.spec.job_properties().to_string()),
                    Some(source_props.to_string()),
                    Some(serde_json::Value::Object(custom).to_string()),
                    Some(statistic.to_string()),
                    Some(serde_json::to_string(&shown).unwrap_or_default()),
                    Some("{}".to_string()),
                    Some(job.reason.clone()),
                    Some(String::new()),
                    Some(String::new()),
                    Some(other.unwrap_or_default()),
                    Some(serde_json::to_string(&latest.iter().map(|(p, o)| (p.to_string(), o.to_string())).collect::<BTreeMap<_, _>>()).unwrap_or_default()),
                    Some(serde_json::to_string(&lag).unwrap_or_default()),
                    Some(serde_json::to_string(&progress.error_samples).unwrap_or_default()),
                    job.owner.clone().filter(|_| job.state == JobState::Running),
                ]
            })
            .collect();
        (names, rows)
    }

    /// Runs the supervisor until `shutdown` fires; then stops the runners (what they had
    /// not committed is fetched again by whoever runs the job next).
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.tick().await {
                    tracing::warn!(error = %e, "routine load supervisor tick failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = me.wake.notified() => {}
                    _ = shutdown.changed() => break,
                }
            }
            let running: Vec<Running> = me.running.lock().drain().map(|(_, r)| r).collect();
            for r in running {
                r.stop.send_replace(true);
                let _ = r.handle.await;
            }
        })
    }

    /// One supervision pass: claim or renew the jobs this node should run, start and stop
    /// runners to match.
    async fn tick(self: &Arc<Self>) -> R<()> {
        self.warehouse.refresh_if_stale().await?;
        let now = automq_storage::clock::system().now_ms();
        let lease_ms = LEASE.as_millis() as u64;
        let jobs = self.jobs();
        let mut wanted = Vec::new();
        for job in &jobs {
            let key = job_key(&job.db, &job.name);
            let ours = job.owner.as_deref() == Some(self.node.as_str());
            if !job.state.wants_running() || (!ours && job.lease_until_ms > now) {
                continue;
            }
            if ours && self.warehouse.table(&job.db, &job.table).is_none() {
                let reason = format!("table '{}.{}' no longer exists", job.db, job.table);
                self.set_state(job, JobState::Cancelled, reason).await;
                continue;
            }
            let live_error = self
                .running
                .lock()
                .get(&key)
                .filter(|r| r.job_id == job.id)
                .and_then(|r| r.live.source_error.lock().clone());
            let renew = !ours
                || job.state != JobState::Running
                || job.lease_until_ms < now + lease_ms / 2
                || live_error != job.source_error;
            if renew {
                let node = self.node.clone();
                let id = job.id;
                let claimed = self
                    .update_job(&job.db, &job.name, |j| {
                        if j.id != id || !j.state.wants_running() {
                            return Err(conflict("job changed"));
                        }
                        if j.owner.as_deref() != Some(node.as_str()) && j.lease_until_ms > now {
                            return Err(conflict("claimed by another node"));
                        }
                        j.owner = Some(node.clone());
                        j.lease_until_ms = now + lease_ms;
                        j.state = JobState::Running;
                        j.source_error = live_error.clone();
                        Ok(())
                    })
                    .await;
                match claimed {
                    Ok(_) => {}
                    Err(WhError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            wanted.push(key);
        }
        // Start what we should run, stop what we should not.
        let mut running = self.running.lock();
        running.retain(|key, r| {
            let keep = wanted.contains(key)
                && !r.handle.is_finished()
                && jobs.iter().any(|j| job_key(&j.db, &j.name) == *key && j.id == r.job_id);
            if !keep {
                r.stop.send_replace(true);
            }
            keep
        });
        for key in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let Some(job) = jobs.iter().find(|j| job_key(&j.db, &j.name) == key).cloned() else { continue };
            let (stop, stop_rx) = watch::channel(false);
            let live = Arc::new(Live::default());
            let handle = tokio::spawn(runner::run(self.clone(), job.clone(), live.clone(), stop_rx));
            tracing::info!(db = %job.db, job = %job.name, node = %self.node, "routine load started on this node");
            running.insert(key, Running { job_id: job.id, stop, handle, live });
        }
        Ok(())
    }

    /// Moves a job this node runs to PAUSED or CANCELLED with a reason.
    async fn set_state(&self, job: &LoadJob, state: JobState, reason: String) {
        let now = automq_storage::clock::system().now_ms();
        let node = self.node.clone();
        let result = self
            .update_job(&job.db, &job.name, |j| {
                if j.id != job.id || j.state.is_final() || j.owner.as_deref() != Some(node.as_str()) {
                    return Err(conflict("job changed"));
                }
                j.state = state;
                j.reason = reason.clone();
                match state {
                    JobState::Paused => j.paused_ms = Some(now),
                    _ => j.end_ms = Some(now),
                }
                Ok(())
            })
            .await;
        match result {
            Ok(_) => {
                tracing::warn!(db = %job.db, job = %job.name, state = state.as_str(), %reason, "routine load changed state")
            }
            Err(e) => {
                tracing::info!(db = %job.db, job = %job.name, error = %e, "routine load state change not applied")
            }
        }
        self.wake.notify_one();
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> R<String> {
    serde_json::to_string(v).map_err(|e| WhError::internal(e.to_string()))
}

fn fmt_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
