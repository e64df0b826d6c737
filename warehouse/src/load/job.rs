//! A routine-load job as stored in the catalog: its definition and state (`wh/load/<db>/<job>`)
//! and its progress (`wh/loadprogress/<db>/<job>`). Progress (the next offset of every
//! partition, cumulative counters) is only ever written in the same catalog record as the
//! table data it accounts for, which is what makes a load exactly-once.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::stmt::{ColumnMapping, LoadClauses};
use crate::table::WhError;

type R<T> = Result<T, WhError>;

pub fn job_key(db: &str, name: &str) -> String {
    format!("wh/load/{db}/{name}")
}

pub fn progress_key(db: &str, name: &str) -> String {
    format!("wh/loadprogress/{db}/{name}")
}

pub const JOBS_PREFIX: &str = "wh/load/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    NeedSchedule,
    Running,
    Paused,
    Stopped,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::NeedSchedule => "NEED_SCHEDULE",
            JobState::Running => "RUNNING",
            JobState::Paused => "PAUSED",
            JobState::Stopped => "STOPPED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// Stopped and cancelled jobs never run again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Stopped | JobState::Cancelled)
    }

    /// A node should be running the job.
    pub fn wants_running(self) -> bool {
        matches!(self, JobState::NeedSchedule | JobState::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartAt {
    Beginning,
    End,
    Offset(i64),
}

impl StartAt {
    pub fn parse(s: &str) -> R<StartAt> {
        match s.trim().to_ascii_uppercase().as_str() {
            "OFFSET_BEGINNING" => Ok(StartAt::Beginning),
            "OFFSET_END" => Ok(StartAt::End),
            n => n.parse::<i64>().ok().filter(|o| *o >= 0).map(StartAt::Offset).ok_or_else(|| {
                WhError::Invalid(format!(
                    "invalid kafka offset '{s}': use OFFSET_BEGINNING, OFFSET_END or a non-negative number"
                ))
            }),
        }
    }
}

/// Everything that says what a job loads and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub columns: Option<Vec<ColumnMapping>>,
    pub column_separator: String,
    pub row_delimiter: String,
    pub where_sql: Option<String>,
    pub format: Format,
    pub jsonpaths: Option<Vec<String>>,
    pub json_root: Option<String>,
    pub strip_outer_array: bool,
    pub max_batch_interval_ms: u64,
    pub max_batch_rows: u64,
    pub max_error_number: u64,
    pub desired_concurrent_number: u32,
    pub brokers: Vec<String>,
    pub topic: String,
    /// Explicit partitions (with their starting points); `None`: every partition of the
    /// topic, new ones included, starting at `default_offset`.
    pub partitions: Option<Vec<(i32, StartAt)>>,
    pub default_offset: StartAt,
    pub group_id: Option<String>,
    pub client_id: String,
    pub fetch_max_bytes: i32,
    pub fetch_wait_ms: i32,
    /// `property.*` settings as given (shown by SHOW ROUTINE LOAD).
    pub client_properties: BTreeMap<String, String>,
}

/// Defaults: a batch commits at most every 200 ms (so rows are queryable well under a second
/// after they are produced), or as soon as it holds 200,000 rows.
pub const DEFAULT_BATCH_INTERVAL_MS: u64 = 200;
pub const DEFAULT_BATCH_ROWS: u64 = 200_000;

const JOB_PROPERTIES: &[&str] = &[
    "format",
    "jsonpaths",
    "json_root",
    "strip_outer_array",
    "max_batch_interval",
    "max_batch_rows",
    "max_error_number",
    "desired_concurrent_number",
    "max_filter_ratio",
    "strict_mode",
    "timezone",
    "partial_update",
    "task_consume_second",
    "task_timeout_second",
    "log_rejected_record_num",
];

/// `property.*` client settings that mean something here (others are refused, as librdkafka
/// refuses unknown settings, so a typo is not silently ignored).
const CLIENT_PROPERTIES: &[&str] = &[
    "group.id",
    "client.id",
    "kafka_default_offsets",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.wait.max.ms",
    "fetch.max.wait.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "isolation.level",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.ca.pem",
];

/// Client properties never shown back (SHOW ROUTINE LOAD masks them).
pub const SECRET_PROPERTIES: &[&str] = &["sasl.password"];

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> R<T> {
    v.trim().parse::<T>().map_err(|_| WhError::Invalid(format!("invalid value '{v}' for property \"{key}\"")))
}

fn parse_bool(key: &str, v: &str) -> R<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(WhError::Invalid(format!("invalid value '{v}' for property \"{key}\": use true or false"))),
    }
}

impl LoadSpec {
    /// The spec of a new job: defaults, then the statement's clauses and properties.
    pub fn new(
        clauses: &LoadClauses,
        properties: &BTreeMap<String, String>,
        source: &BTreeMap<String, String>,
    ) -> R<LoadSpec> {
        let mut spec = LoadSpec {
            columns: None,
            column_separator: "\t".into(),
            row_delimiter: "\n".into(),
            where_sql: None,
            format: Format::Csv,
            jsonpaths: None,
            json_root: None,
            strip_outer_array: false,
            max_batch_interval_ms: DEFAULT_BATCH_INTERVAL_MS,
            max_batch_rows: DEFAULT_BATCH_ROWS,
            max_error_number: 0,
            desired_concurrent_number: 1,
            brokers: Vec::new(),
            topic: String::new(),
            partitions: None,
            default_offset: StartAt::End,
            group_id: None,
            client_id: "automq-routine-load".into(),
            fetch_max_bytes: 16 << 20,
            fetch_wait_ms: 100,
            client_properties: BTreeMap::new(),
        };
        spec.apply(clauses, properties, source, true)?;
        Ok(spec)
    }

    /// Applies changes (ALTER ROUTINE LOAD: only what is given changes; `topic` and
    /// `kafka_broker_list` are fixed after creation).
    pub fn apply(
        &mut self,
        clauses: &LoadClauses,
        properties: &BTreeMap<String, String>,
        source: &BTreeMap<String, String>,
        creating: bool,
    ) -> R<()> {
        if let Some(sep) = &clauses.column_separator {
            self.column_separator = sep.clone();
        }
        if let Some(d) = &clauses.row_delimiter {
            self.row_delimiter = d.clone();
        }
        if let Some(cols) = &clauses.columns {
            let mut seen = std::collections::HashSet::new();
            for c in cols {
                let name = match c {
                    ColumnMapping::Source(n) | ColumnMapping::Derived { name: n, .. } => n,
                };
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(WhError::Invalid(format!("column '{name}' appears twice in COLUMNS")));
                }
            }
            self.columns = Some(cols.clone());
        }
        if let Some(w) = &clauses.where_sql {
            self.where_sql = Some(w.clone());
        }
        for (key, v) in properties {
            match key.as_str() {
                "format" => {
                    self.format = match v.trim().to_ascii_lowercase().as_str() {
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        other => {
                            return Err(WhError::Invalid(format!("format '{other}' is not supported: use json or csv")))
                        }
                    }
                }
                "jsonpaths" => {
                    let paths: Vec<String> = serde_json::from_str(v).map_err(|e| {
                        WhError::Invalid(format!("jsonpaths must be a JSON array of strings like [\"$.id\"]: {e}"))
                    })?;
                    for p in &paths {
                        super::format::JsonPath::parse(p)?;
                    }
                    self.jsonpaths = Some(paths);
                }
                "json_root" => {
                    super::format::JsonPath::parse(v)?;
                    self.json_root = Some(v.clone()).filter(|r| !r.trim().is_empty());
                }
                "strip_outer_array" => self.strip_outer_array = parse_bool(key, v)?,
                "max_batch_interval" => {
                    let secs: f64 = parse_num(key, v)?;
                    if !(0.01..=3600.0).contains(&secs) {
                        return Err(WhError::Invalid(format!(
                            "max_batch_interval must be between 0.01 and 3600 seconds, not {v}"
                        )));
                    }
                    self.max_batch_interval_ms = (secs * 1000.0).round() as u64;
                }
                "max_batch_rows" => {
                    self.max_batch_rows = parse_num(key, v)?;
                    if self.max_batch_rows == 0 {
                        return Err(WhError::Invalid("max_batch_rows must be at least 1".into()));
                    }
                }
                "max_error_number" => self.max_error_number = parse_num(key, v)?,
                "desired_concurrent_number" => {
                    self.desired_concurrent_number = parse_num(key, v)?;
                    if !(1..=64).contains(&self.desired_concurrent_number) {
                        return Err(WhError::Invalid("desired_concurrent_number must be between 1 and 64".into()));
                    }
                }
                "strict_mode" | "partial_update" => {
                    if parse_bool(key, v)? {
                        return Err(WhError::Unsupported(format!("\"{key}\" = \"true\" is not supported")));
                    }
                }
                k if JOB_PROPERTIES.contains(&k) => {} // accepted, no effect here
                other => return Err(WhError::Invalid(format!("unknown routine load property \"{other}\""))),
            }
        }
        let mut offsets: Option<Vec<StartAt>> = None;
        let mut partitions: Option<Vec<i32>> = None;
        for (key, v) in source {
            match key.as_str() {
                "kafka_broker_list" => {
                    if !creating {
                        return Err(WhError::Invalid("kafka_broker_list cannot be altered".into()));
                    }
                    self.brokers = v.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect();
                }
                "kafka_topic" => {
                    if !creating {
                        return Err(WhError::Invalid("kafka_topic cannot be altered".into()));
                    }
                    self.topic = v.trim().to_string();
                }
                "kafka_partitions" => {
                    partitions = Some(
                        v.split(',').map(|p| parse_num::<i32>(key, p)).collect::<R<Vec<_>>>()?.into_iter().collect(),
                    )
                }
                "kafka_offsets" => offsets = Some(v.split(',').map(StartAt::parse).collect::<R<Vec<_>>>()?),
                k if k.starts_with("property.") => {
                    let prop = &k["property.".len()..];
                    if !CLIENT_PROPERTIES.contains(&prop) {
                        return Err(WhError::Invalid(format!(
                            "unsupported Kafka client property \"{k}\" (supported: {})",
                            CLIENT_PROPERTIES.iter().map(|p| format!("property.{p}")).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    match prop {
                        "group.id" => self.group_id = Some(v.clone()),
                        "client.id" => self.client_id = v.clone(),
                        "kafka_default_offsets" => self.default_offset = StartAt::parse(v)?,
                        "fetch.max.bytes" | "max.partition.fetch.bytes" => {
                            self.fetch_max_bytes = parse_num(k, v)?;
                            if self.fetch_max_bytes < 1024 {
                                return Err(WhError::Invalid(format!("{k} must be at least 1024")));
                            }
                        }
                        "fetch.wait.max.ms" | "fetch.max.wait.ms" => self.fetch_wait_ms = parse_num(k, v)?,
                        "security.protocol"
                            if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                                .iter()
                                .any(|p| v.eq_ignore_ascii_case(p)) =>
                        {
                            return Err(WhError::Invalid(format!(
                                "invalid security.protocol '{v}' (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
                            )))
                        }
                        "sasl.mechanism" | "sasl.mechanisms"
                            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                                .iter()
                                .any(|m| v.eq_ignore_ascii_case(m)) =>
                        {
                            return Err(WhError::Unsupported(format!(
                                "sasl.mechanism '{v}' is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                            )))
                        }
                        "isolation.level"
                            if !v.eq_ignore_ascii_case("read_committed")
                                && !v.eq_ignore_ascii_case("read_uncommitted") =>
                        {
                            return Err(WhError::Invalid(format!("invalid isolation.level '{v}'")))
                        }
                        _ => {}
                    }
                    self.client_properties.insert(prop.to_string(), v.clone());
                }
                other => return Err(WhError::Invalid(format!("unknown data source property \"{other}\""))),
            }
        }
        let protocol = self.client_properties.get("security.protocol").map(|p| p.to_ascii_uppercase());
        if matches!(protocol.as_deref(), Some("SASL_PLAINTEXT" | "SASL_SSL")) {
            for needed in ["sasl.username", "sasl.password"] {
                if !self.client_properties.contains_key(needed) {
                    return Err(WhError::Invalid(format!(
                        "security.protocol {} needs property.{needed}",
                        protocol.unwrap_or_default()
                    )));
                }
            }
        }
        match (partitions, offsets) {
            (Some(ps), Some(os)) if ps.len() != os.len() => {
                return Err(WhError::Invalid(format!(
                    "kafka_partitions lists {} partitions but kafka_offsets {} offsets",
                    ps.len(),
                    os.len()
                )))
            }
            (Some(ps), os) => {
                let os = os.unwrap_or_else(|| vec![self.default_offset; ps.len()]);
                let mut unique = ps.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != ps.len() || ps.iter().any(|p| *p < 0) {
                    return Err(WhError::Invalid("kafka_partitions must be distinct non-negative numbers".into()));
                }
                self.partitions = Some(ps.into_iter().zip(os).collect());
            }
            (None, Some(os)) => match (&mut self.partitions, creating) {
                (Some(existing), false) if existing.len() == os.len() => {
                    for (slot, o) in existing.iter_mut().zip(os) {
                        slot.1 = o;
                    }
                }
                _ => return Err(WhError::Invalid("kafka_offsets needs kafka_partitions".into())),
            },
            (None, None) => {}
        }
        if self.brokers.is_empty() {
            return Err(WhError::Invalid("kafka_broker_list is required".into()));
        }
        if self.topic.is_empty() {
            return Err(WhError::Invalid("kafka_topic is required".into()));
        }
        if self.format == Format::Csv && self.jsonpaths.is_some() {
            return Err(WhError::Invalid("jsonpaths needs \"format\" = \"json\"".into()));
        }
        Ok(())
    }

    /// Job properties as SHOW ROUTINE LOAD prints them.
    pub fn job_properties(&self) -> serde_json::Value {
        serde_json::json!({
            "format": match self.format { Format::Json => "json", Format::Csv => "csv" },
            "jsonpaths": self.jsonpaths.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()).unwrap_or_default(),
            "json_root": self.json_root.clone().unwrap_or_default(),
            "strip_outer_array": self.strip_outer_array.to_string(),
            "columnSeparator": format!("'{}'", self.column_separator.escape_default()),
            "rowDelimiter": format!("'{}'", self.row_delimiter.escape_default()),
            "maxBatchIntervalS": format!("{}", self.max_batch_interval_ms as f64 / 1000.0),
            "maxBatchRows": self.max_batch_rows.to_string(),
            "maxErrorNum": self.max_error_number.to_string(),
            "desireTaskConcurrentNum": self.desired_concurrent_number.to_string(),
            "columnToColumnExpr": self.columns.as_ref().map(|cs| cs.iter().map(|c| match c {
                ColumnMapping::Source(n) => n.clone(),
                ColumnMapping::Derived { name, expr } => format!("{name}={expr}"),
            }).collect::<Vec<_>>().join(",")).unwrap_or_default(),
            "whereExpr": self.where_sql.clone().unwrap_or_default(),
        })
    }
}

/// A job's definition and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadJob {
    pub id: u64,
    pub name: String,
    pub db: String,
    pub table: String,
    pub spec: LoadSpec,
    pub state: JobState,
    /// Why the job last changed state (a pause's cause, a cancellation's).
    pub reason: String,
    pub created_ms: u64,
    pub paused_ms: Option<u64>,
    pub end_ms: Option<u64>,
    /// The node running the job and until when its claim holds.
    pub owner: Option<String>,
    pub lease_until_ms: u64,
    /// The statement that created the job.
    pub sql: String,
    /// A source problem the job is retrying through (shown as OtherMsg), if any.
    pub source_error: Option<String>,
}

/// Cumulative counters, as StarRocks's `Statistic` column names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub received_bytes: u64,
    pub total_rows: u64,
    pub loaded_rows: u64,
    pub error_rows: u64,
    pub unselected_rows: u64,
    pub committed_tasks: u64,
    pub aborted_tasks: u64,
    pub task_execute_ms: u64,
}

pub const MAX_ERROR_SAMPLES: usize = 10;

/// What a job has consumed; written only together with the data it produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub job_id: u64,
    /// Next offset to consume, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// High watermark seen at the last commit, per partition.
    pub latest: BTreeMap<i32, i64>,
    pub stats: Stats,
    /// Error accounting window (`max_batch_rows * 10` rows, as in StarRocks).
    pub window_rows: u64,
    pub window_errors: u64,
    pub error_samples: VecDeque<String>,
    pub committed_ms: u64,
}

impl Progress {
    pub fn add_error_sample(&mut self, sample: String) {
        if self.error_samples.len() == MAX_ERROR_SAMPLES {
            self.error_samples.pop_front();
        }
        self.error_samples.push_back(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn properties_are_validated() {
        let source = props(&[("kafka_broker_list", "a:1,b:2"), ("kafka_topic", "t")]);
        let spec = LoadSpec::new(&LoadClauses::default(), &BTreeMap::new(), &source).unwrap();
        assert_eq!(spec.brokers, ["a:1", "b:2"]);
        assert_eq!(spec.max_batch_interval_ms, DEFAULT_BATCH_INTERVAL_MS);
        assert_eq!(spec.partitions, None);

        let mut s = source.clone();
        s.insert("kafka_partitions".into(), "0,1,2".into());
        s.insert("kafka_offsets".into(), "OFFSET_BEGINNING,OFFSET_END,42".into());
        let spec = LoadSpec::new(&LoadClauses::default(), &props(&[("max_batch_interval", "0.5")]), &s).unwrap();
        assert_eq!(spec.partitions, Some(vec![(0, StartAt::Beginning), (1, StartAt::End), (2, StartAt::Offset(42))]));
        assert_eq!(spec.max_batch_interval_ms, 500);

        for (p, s2) in [
            (props(&[("format", "avro")]), source.clone()),
            (props(&[("max_batch_interval", "0")]), source.clone()),
            (props(&[("nonsense", "1")]), source.clone()),
            (BTreeMap::new(), props(&[("kafka_topic", "t")])),
            (BTreeMap::new(), {
                let mut x = source.clone();
                x.insert("kafka_partitions".into(), "0,1".into());
                x.insert("kafka_offsets".into(), "1".into());
                x
            }),
            (BTreeMap::new(), {
                let mut x = source.clone();
                x.insert("property.fetch.wait.mx".into(), "1".into());
                x
            }),
        ] {
            assert!(LoadSpec::new(&LoadClauses::default(), &p, &s2).is_err(), "{p:?} {s2:?}");
        }
    }
}
