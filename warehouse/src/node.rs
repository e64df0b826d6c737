//! A running query node: the MySQL listener, the HTTP side port (`/metrics`, `/healthz`,
//! `/readyz`), background compaction and GC. Used by `automq-query-node` and `automq standalone`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use automq_storage::object_store::{self, StoreOptions};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::load::RoutineLoads;
use crate::mysql::auth::StoredCredential;
use crate::mysql::binary::Param;
use crate::mysql::error::MysqlError;
use crate::mysql::login::Logins;
use crate::mysql::server::{serve, QueryHandler, Response, ServerConfig, Session};
use crate::mysql::tls::TlsFiles;
use crate::table::{Warehouse, WarehouseConfig};

/// `automq-query-node` settings; every flag is also an `AUTOMQ_*` environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "automq-query-node", version, about = "MySQL-protocol query node over tables in object storage")]
pub struct QueryNodeConfig {
    /// Local directory: the object store by default (`DIR/objects`).
    #[arg(long, env = "AUTOMQ_DATA_DIR", default_value = "automq-data")]
    pub data_dir: PathBuf,
    /// MySQL protocol listener.
    #[arg(long, env = "AUTOMQ_MYSQL_LISTEN", default_value = "127.0.0.1:9030")]
    pub mysql_listen: SocketAddr,
    /// HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "AUTOMQ_QUERY_HTTP_LISTEN", default_value = "127.0.0.1:8030")]
    pub http_listen: SocketAddr,
    /// Object store URL (`s3://bucket/prefix?endpoint=...&region=...`, `file:///path`);
    /// default: the data directory.
    #[arg(long, env = "AUTOMQ_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// This node's id (logs and metrics).
    #[arg(long, env = "AUTOMQ_NODE_ID", default_value_t = 1)]
    pub node_id: u32,
    /// Password of the `root` user (empty by default, as a fresh StarRocks).
    #[arg(long, env = "AUTOMQ_ROOT_PASSWORD", default_value = "", hide_env_values = true)]
    pub root_password: String,
    /// Memory for decoded hot segments, in MiB.
    #[arg(long, env = "AUTOMQ_QUERY_CACHE_MB", default_value_t = 2048)]
    pub cache_mb: usize,
    /// Local disk for segment objects read from a remote object store, in MiB (0: none).
    /// Unused when the object store is the data directory itself.
    #[arg(long, env = "AUTOMQ_QUERY_DISK_CACHE_MB", default_value_t = 2048)]
    pub disk_cache_mb: u64,
    /// Where the disk cache lives (default: `segment-cache` under the data directory).
    #[arg(long, env = "AUTOMQ_QUERY_DISK_CACHE_DIR")]
    pub disk_cache_dir: Option<PathBuf>,
    /// Writes whose encoded rows take at most this many KiB commit them inline in the catalog
    /// (one object-store write), flushed into Parquet objects by compaction (0: never inline).
    #[arg(long, env = "AUTOMQ_QUERY_INLINE_MAX_KB", default_value_t = 256)]
    pub inline_max_kb: usize,
    /// `kafka_broker_list` of routine loads created without one (host:port,...), e.g. the
    /// bootstrap address of the cluster the warehouse reads from.
    #[arg(long, env = "AUTOMQ_DEFAULT_KAFKA_BROKERS", default_value = "")]
    pub default_kafka_brokers: String,
    /// Largest MySQL packet accepted (max_allowed_packet), in bytes.
    #[arg(long, env = "AUTOMQ_MAX_ALLOWED_PACKET", default_value_t = 64 << 20)]
    pub max_allowed_packet: usize,
    /// TLS on the MySQL listener: the certificate chain (PEM). With --tls-key; clients that ask
    /// for TLS get it, and the pair is reloaded when its files change.
    #[arg(long, env = "AUTOMQ_MYSQL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "AUTOMQ_MYSQL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse MySQL logins that do not switch to TLS first (MySQL's require_secure_transport,
    /// error 3159). Needs --tls-cert.
    #[arg(
        long,
        env = "AUTOMQ_REQUIRE_SECURE_TRANSPORT",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub require_secure_transport: bool,
    /// A directory of MySQL users to keep: each file's name is a user, its content (trailing
    /// newline ignored) the password. Created or updated at start and whenever the files
    /// change (on Kubernetes: a projected volume of the users' Secrets); their grants and users
    /// not in the directory are left alone.
    #[arg(long, env = "AUTOMQ_USERS_DIR")]
    pub users_dir: Option<PathBuf>,
}

impl QueryNodeConfig {
    /// Defaults with the given directory and listeners (standalone, tests).
    pub fn embedded(data_dir: impl Into<PathBuf>, mysql_listen: SocketAddr, http_listen: SocketAddr) -> Self {
        let mut config = <QueryNodeConfig as clap::Parser>::parse_from(["automq-query-node"]);
        config.data_dir = data_dir.into();
        config.mysql_listen = mysql_listen;
        config.http_listen = http_listen;
        config
    }

    pub fn object_store_url(&self) -> String {
        self.object_store.clone().unwrap_or_else(|| {
            let dir = self.data_dir.join("objects");
            let abs = std::path::absolute(&dir).unwrap_or(dir);
            format!("file://{}", abs.display())
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    kind: String,
    outcome: String,
}

/// Statement metrics, recorded around the engine.
#[derive(Debug)]
struct Metered {
    engine: Arc<Engine>,
    statements: Family<OutcomeLabel, Counter>,
    latency: Family<KindLabel, Histogram>,
    connections: Gauge,
    connections_total: Counter,
}

fn statement_kind(sql: &str) -> String {
    let word =
        sql.trim_start().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("").to_ascii_lowercase();
    match word.as_str() {
        "select" | "with" | "insert" | "update" | "delete" | "create" | "drop" | "show" | "set" | "use" | "alter"
        | "truncate" | "describe" | "desc" => word,
        _ => "other".into(),
    }
}

impl Metered {
    fn record(&self, sql: &str, started: Instant, ok: bool) {
        let kind = statement_kind(sql);
        let outcome = if ok { "ok" } else { "error" }.to_string();
        self.statements.get_or_create(&OutcomeLabel { kind: kind.clone(), outcome }).inc();
        self.latency.get_or_create(&KindLabel { kind }).observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl QueryHandler for Metered {
    async fn credential(&self, user: &str) -> Option<StoredCredential> {
        self.engine.credential(user).await
    }

    async fn use_database(&self, session: &mut Session, database: &str) -> Result<(), MysqlError> {
        self.engine.use_database(session, database).await
    }

    async fn query(&self, session: &mut Session, sql: &str) -> Result<Response, MysqlError> {
        let started = Instant::now();
        let result = self.engine.query(session, sql).await;
        self.record(sql, started, result.is_ok());
        result
    }

    async fn field_list(&self, session: &mut Session, table: &str) -> Result<SchemaRef, MysqlError> {
        self.engine.field_list(session, table).await
    }

    async fn prepare(&self, session: &mut Session, sql: &str) -> Result<usize, MysqlError> {
        self.engine.prepare(session, sql).await
    }

    async fn execute(&self, session: &mut Session, sql: &str, params: &[Param]) -> Result<Response, MysqlError> {
        let started = Instant::now();
        let result = self.engine.execute(session, sql, params).await;
        self.record(sql, started, result.is_ok());
        result
    }
}

/// Table-layer counters and cache usage, read at scrape time.
#[derive(Debug)]
struct WarehouseCollector(Arc<Warehouse>);

impl Collector for WarehouseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        for (name, help, value) in [
            ("warehouse_rows_written", "Rows committed to tables", get(&s.rows_written)),
            ("warehouse_segments_written", "Parquet segments uploaded", get(&s.segments_written)),
            (
                "warehouse_segments_inlined",
                "Segments of fresh rows committed inline in the catalog",
                get(&s.segments_inlined),
            ),
            (
                "warehouse_inline_flushes",
                "Compactions that flushed inline segments to an object",
                get(&s.inline_flushes),
            ),
            ("warehouse_commits", "Table changes committed to the metadata log", get(&s.commits)),
            ("warehouse_commit_conflicts", "Commits lost to another node (then retried)", get(&s.commit_conflicts)),
            ("warehouse_compactions", "Compactions committed", get(&s.compactions)),
            ("warehouse_objects_deleted", "Unreferenced objects deleted", get(&s.objects_deleted)),
            ("warehouse_segment_cache_hits", "Segment reads served from memory", get(&s.cache_hits)),
            ("warehouse_segment_cache_misses", "Segment reads not served from memory", get(&s.cache_misses)),
            (
                "warehouse_segment_disk_cache_hits",
                "Segment reads served by the local disk cache",
                get(&s.disk_cache_hits),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let (entries, bytes) = self.0.cache_usage();
        let (inline_entries, inline_bytes) = self.0.inline_usage();
        let disk = self.0.disk_cache_usage().unwrap_or_default();
        for (name, help, value) in [
            ("warehouse_segment_disk_cache_entries", "Objects held in the local disk cache", disk.entries as i64),
            ("warehouse_segment_disk_cache_bytes", "Bytes held in the local disk cache", disk.bytes as i64),
            (
                "warehouse_inline_entries",
                "Inline segments and delete vectors held in the catalog",
                inline_entries as i64,
            ),
            ("warehouse_inline_bytes", "Catalog bytes held by inline segments and delete vectors", inline_bytes as i64),
            ("warehouse_segment_cache_entries", "Decoded segments held in memory", entries as i64),
            ("warehouse_segment_cache_bytes", "Memory held by decoded segments", bytes as i64),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct HttpState {
    registry: parking_lot::Mutex<Registry>,
    warehouse: Arc<Warehouse>,
}

/// A started query node.
pub struct RunningQueryNode {
    pub engine: Arc<Engine>,
    pub mysql_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    open: Arc<OpenConnections>,
}

impl std::fmt::Debug for RunningQueryNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningQueryNode")
            .field("mysql_addr", &self.mysql_addr)
            .field("http_addr", &self.http_addr)
            .finish()
    }
}

impl RunningQueryNode {
    pub async fn start(config: QueryNodeConfig) -> anyhow::Result<Self> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(TlsFiles::load(cert, key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        if config.require_secure_transport && tls.is_none() {
            anyhow::bail!("--require-secure-transport needs --tls-cert and --tls-key");
        }
        let mysql = TcpListener::bind(config.mysql_listen).await?;
        let http = TcpListener::bind(config.http_listen).await?;
        let mysql_addr = mysql.local_addr()?;
        let http_addr = http.local_addr()?;
        // Storage metrics carry their full names (automq_storage_*); the node's own are prefixed.
        let mut root = Registry::default();
        automq_common::register_process_metrics(&mut root);
        let url = config.object_store_url();
        let store = object_store::open(&url, &StoreOptions::default(), Some(&mut root))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open object store {url}: {e}"))?;
        let disk_cache_dir = match &config.object_store {
            Some(_) => Some(config.disk_cache_dir.clone().unwrap_or_else(|| config.data_dir.join("segment-cache"))),
            None => None,
        };
        let warehouse_config = WarehouseConfig {
            cache_bytes: config.cache_mb << 20,
            disk_cache_dir,
            disk_cache_bytes: config.disk_cache_mb << 20,
            inline_max_bytes: config.inline_max_kb << 10,
            ..WarehouseConfig::default()
        };
        let warehouse = Warehouse::open(store, warehouse_config, automq_storage::clock::system())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the warehouse catalog: {e}"))?;
        if let Some(dir) = &config.users_dir {
            crate::access::users_dir::sync(&warehouse, dir).await.map_err(|e| anyhow::anyhow!("--users-dir: {e}"))?;
        }
        let registry = root.sub_registry_with_prefix("automq");
        let loads = RoutineLoads::new(warehouse.clone(), config.node_id.to_string());
        loads.set_default_brokers(&config.default_kafka_brokers);
        loads.metrics.register(registry);
        let engine = Engine::with_loads(warehouse.clone(), loads.clone(), &config.root_password);
        let metered = Arc::new(Metered {
            engine: engine.clone(),
            statements: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 18))),
            connections: Gauge::default(),
            connections_total: Counter::default(),
        });
        registry.register("mysql_statements", "SQL statements by kind and outcome", metered.statements.clone());
        registry.register("mysql_statement_seconds", "Statement latency by kind", metered.latency.clone());
        registry.register("mysql_connections", "Open MySQL connections", metered.connections.clone());
        registry.register(
            "mysql_connections_accepted",
            "MySQL connections accepted",
            metered.connections_total.clone(),
        );
        registry.register_collector(Box::new(WarehouseCollector(warehouse.clone())));
        let logins = Arc::new(Logins::default());
        logins.register(registry);

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let server_config = ServerConfig {
            max_message: config.max_allowed_packet,
            closing: Some(rx.clone()),
            tls,
            require_secure_transport: config.require_secure_transport,
            logins,
            ..ServerConfig::default()
        };
        let open = Arc::new(OpenConnections::default());
        let accepted = open.clone();
        let node_id = config.node_id;
        let mut accept_rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let ids = AtomicU32::new(node_id.wrapping_mul(1 << 20).wrapping_add(1));
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = mysql.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = accept_rx.changed() => return,
                };
                let _ = stream.set_nodelay(true);
                let session = Session {
                    connection_id: ids.fetch_add(1, Ordering::Relaxed),
                    client_host: peer.ip().to_string(),
                    ..Session::default()
                };
                let handler = metered.clone();
                let server_config = server_config.clone();
                handler.connections.inc();
                handler.connections_total.inc();
                let guard = accepted.enter();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, handler.clone(), session, &server_config).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    handler.connections.dec();
                    drop(guard);
                });
            }
        }));
        let state = Arc::new(HttpState { registry: parking_lot::Mutex::new(root), warehouse: warehouse.clone() });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(state);
        let mut http_rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(http, app).with_graceful_shutdown(async move {
                let _ = http_rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP listener failed");
            }
        }));
        tasks.push(loads.spawn(rx.clone()));
        if let Some(dir) = config.users_dir.clone() {
            let every = Duration::from_secs(2);
            tasks.push(tokio::spawn(crate::access::users_dir::watch(warehouse.clone(), dir, every, rx.clone())));
        }
        let maintenance = warehouse.spawn_maintenance();
        let mut maintenance_rx = rx;
        tasks.push(tokio::spawn(async move {
            let _ = maintenance_rx.changed().await;
            maintenance.abort();
        }));
        tracing::info!(
            %mysql_addr,
            %http_addr,
            node_id,
            tls = config.tls_cert.is_some(),
            require_secure_transport = config.require_secure_transport,
            "query node listening"
        );
        Ok(RunningQueryNode { engine, mysql_addr, http_addr, shutdown, tasks, open })
    }

    /// Stops listening (the readiness probe fails, so no new queries arrive), lets every
    /// statement in progress finish and be answered, closing each connection after it, for at
    /// most `SHUTDOWN_GRACE`. Every acknowledged change is already in the object store.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, self.open.drained()).await.is_err() {
            tracing::warn!(open = self.open.count(), "statements still running at the end of the grace period");
        }
    }
}

/// How long a stopping query node waits for the statements in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Open MySQL connections, to wait for at shutdown.
#[derive(Debug, Default)]
struct OpenConnections {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

struct OpenGuard(Arc<OpenConnections>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl OpenConnections {
    fn enter(self: &Arc<Self>) -> OpenGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    async fn drained(&self) {
        loop {
            let notified = self.changed.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    automq_common::metrics_response(&state.registry.lock())
}

async fn ready(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    match state.warehouse.refresh().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("catalog unreachable: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn tls_flags_go_together_and_secure_transport_takes_a_value_or_none() {
        let parse = |args: &[&str]| QueryNodeConfig::try_parse_from([&["automq-query-node"][..], args].concat());
        let c = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--require-secure-transport"]).unwrap();
        assert!(c.require_secure_transport && c.tls_cert.is_some());
        assert!(!parse(&["--require-secure-transport", "false"]).unwrap().require_secure_transport);
        assert!(parse(&["--tls-cert", "c.pem"]).is_err(), "a certificate without its key");
        assert!(parse(&["--tls-key", "k.pem"]).is_err(), "a key without its certificate");
    }

    #[tokio::test]
    async fn secure_transport_without_a_certificate_is_refused_at_start() {
        let any = "127.0.0.1:0".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = QueryNodeConfig::embedded(dir.path(), any, any);
        config.require_secure_transport = true;
        let e = RunningQueryNode::start(config).await.unwrap_err().to_string();
        assert!(e.contains("--require-secure-transport needs --tls-cert"), "{e}");
    }
}
