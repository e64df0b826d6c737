//! Broker settings: command-line flags, each with an `AUTOMQ_*` environment variable.
//!
//! The simplest invocation works on embedded defaults: `automq-broker --data-dir DIR` keeps
//! objects in `DIR/objects` (a local-directory object store) and the WAL in `DIR/wal`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "automq-broker", version, about = "Kafka-compatible broker keeping its data in object storage")]
pub struct BrokerConfig {
    /// Local directory for the embedded object store and the file WAL.
    #[arg(long, env = "AUTOMQ_DATA_DIR", default_value = "automq-data")]
    pub data_dir: PathBuf,

    /// Kafka listener.
    #[arg(long, env = "AUTOMQ_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// host:port clients are told to connect to (defaults to the listener address).
    #[arg(long, env = "AUTOMQ_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,

    /// Named Kafka listeners, `NAME://host:port` comma-separated (Kafka's `listeners`); replaces
    /// --listen. See docs/security.md.
    #[arg(long, env = "AUTOMQ_LISTENERS", value_delimiter = ',')]
    pub listeners: Vec<String>,

    /// `NAME://host:port` per listener, what clients that came in through it are told
    /// (Kafka's `advertised.listeners`); a listener not named advertises its bound address.
    #[arg(long, env = "AUTOMQ_ADVERTISED_LISTENERS", value_delimiter = ',')]
    pub advertised_listeners: Vec<String>,

    /// `NAME:PROTOCOL` per listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); a listener named
    /// after a protocol needs no entry (Kafka's `listener.security.protocol.map`).
    #[arg(long, env = "AUTOMQ_LISTENER_SECURITY_PROTOCOL_MAP", value_delimiter = ',')]
    pub listener_security_protocol_map: Vec<String>,

    /// `NAME:key=value`, a listener's own setting: `sasl.enabled.mechanisms` (comma list),
    /// `ssl.certificate`, `ssl.key` (PEM paths). Repeatable; in the environment, newline-separated.
    /// Listeners without their own use --sasl-mechanisms and --tls-cert/--tls-key.
    #[arg(long = "listener-option", env = "AUTOMQ_LISTENER_OPTIONS", value_delimiter = '\n')]
    pub listener_options: Vec<String>,

    /// HTTP listener for /metrics, /healthz, /readyz, the admin API and the brokers' internal
    /// API.
    #[arg(long, env = "AUTOMQ_HTTP_LISTEN", default_value = "127.0.0.1:9644")]
    pub http_listen: SocketAddr,

    /// host:port other brokers reach this broker's HTTP listener at (defaults to the listener
    /// address).
    #[arg(long, env = "AUTOMQ_ADVERTISED_HTTP")]
    pub advertised_http: Option<String>,

    /// This broker's id in the cluster.
    #[arg(long, env = "AUTOMQ_NODE_ID", default_value_t = 1)]
    pub node_id: i32,

    /// Added to `--node-id`: on Kubernetes the node id is the StatefulSet pod's ordinal, and each
    /// broker pool's StatefulSet numbers from 0, so every pool gets its own base (the operator's
    /// `nodeIdBase`) to keep ids unique across the cluster.
    #[arg(long, env = "AUTOMQ_NODE_ID_BASE", default_value_t = 0)]
    pub node_id_base: i32,

    /// Object store URL: file:///dir, s3://bucket/prefix?endpoint=..&region=.., memory://.
    /// Defaults to file://DATA_DIR/objects.
    #[arg(long, env = "AUTOMQ_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// Write-ahead log: `file` (DATA_DIR/wal), `file:PATH`, or `s3` (in the object store).
    #[arg(long, env = "AUTOMQ_WAL", default_value = "file")]
    pub wal: String,

    /// Size of each preallocated file-WAL segment (a multiple of 4096; the WAL keeps up to 16,
    /// two of them preallocated even when idle). One record batch must fit in a segment.
    #[arg(long, env = "AUTOMQ_FILE_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub file_wal_segment_bytes: u64,

    /// Rack (availability zone) reported to clients. Empty means none (on Kubernetes it comes
    /// from the pod's `topology.kubernetes.io/zone` label, absent where the cluster does not set it).
    #[arg(long, env = "AUTOMQ_RACK")]
    pub rack: Option<String>,

    /// The broker pool this broker serves: topics are placed on a pool (topic config
    /// `automq.pool`, default `default`) and led only by brokers of that pool.
    #[arg(long, env = "AUTOMQ_POOL", default_value = "default")]
    pub pool: String,

    /// The pool of topics that set no `automq.pool` and match no `--pool-rule` (cluster-wide:
    /// give every broker the same value; the controller's is used).
    #[arg(long, env = "AUTOMQ_DEFAULT_POOL", default_value = "default")]
    pub default_pool: String,

    /// `PATTERN=POOL`: topics whose whole name matches the regular expression PATTERN, and that
    /// set no `automq.pool`, go to POOL; the first matching rule wins. Repeatable; in the
    /// environment, rules are separated by newlines.
    #[arg(long = "pool-rule", env = "AUTOMQ_POOL_RULES", value_delimiter = '\n')]
    pub pool_rules: Vec<String>,
    /// Cluster id reported to clients (generated and stored on first start when unset).
    #[arg(long, env = "AUTOMQ_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// Create unknown topics on first produce or metadata request, like Kafka's
    /// auto.create.topics.enable.
    #[arg(long, env = "AUTOMQ_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Partitions of auto-created topics (num.partitions).
    #[arg(long, env = "AUTOMQ_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,

    /// Largest request frame accepted (socket.request.max.bytes); larger ones close the
    /// connection.
    #[arg(long, env = "AUTOMQ_MAX_REQUEST_BYTES", default_value_t = 100 << 20)]
    pub max_request_bytes: usize,

    /// Connections idle (or stuck mid-frame) this long are closed (connections.max.idle.ms).
    #[arg(long, env = "AUTOMQ_CONNECTIONS_MAX_IDLE_MS", default_value_t = 600_000)]
    pub connections_max_idle_ms: u64,

    /// Default largest record batch (message.max.bytes).
    #[arg(long, env = "AUTOMQ_MESSAGE_MAX_BYTES", default_value_t = 1_048_588)]
    pub message_max_bytes: usize,

    /// Partitions of the internal consumer offsets topic.
    #[arg(long, env = "AUTOMQ_OFFSETS_TOPIC_PARTITIONS", default_value_t = 8)]
    pub offsets_topic_partitions: i32,

    /// TLS on the Kafka listener: the certificate chain (PEM). With --tls-key; reloaded when the
    /// files change. With --sasl-mechanisms the listener is SASL_SSL, else SSL.
    #[arg(long, env = "AUTOMQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "AUTOMQ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// SASL mechanisms clients must authenticate with (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
    /// comma-separated; none (the default) leaves the listener unauthenticated (PLAINTEXT).
    /// Users are SCRAM credentials in the cluster (AlterUserScramCredentials); PLAIN checks
    /// passwords against them.
    #[arg(long, env = "AUTOMQ_SASL_MECHANISMS", value_delimiter = ',')]
    pub sasl_mechanisms: Vec<String>,

    /// A user created at start when it has no credentials yet (the cluster's first user), with
    /// the password in AUTOMQ_SASL_BOOTSTRAP_PASSWORD.
    #[arg(long, env = "AUTOMQ_SASL_BOOTSTRAP_USER")]
    pub sasl_bootstrap_user: Option<String>,

    /// The bootstrap user's password (from the environment: never on a command line).
    #[arg(skip = std::env::var("AUTOMQ_SASL_BOOTSTRAP_PASSWORD").ok())]
    pub sasl_bootstrap_password: Option<String>,

    /// A directory of SCRAM users to keep in the cluster: each file's name is a user, its
    /// content (trailing newline ignored) the password. The users' SCRAM-SHA-256 and -512
    /// credentials are created or updated at start and whenever the files change (on
    /// Kubernetes: a projected volume of the users' Secrets). Users not in the directory are
    /// left alone.
    #[arg(long, env = "AUTOMQ_SCRAM_USERS_DIR")]
    pub scram_users_dir: Option<PathBuf>,

    /// The authorizer: `none` (every client may do everything) or `acl` (Kafka ACLs, managed
    /// with CreateAcls / DeleteAcls and enforced on every request).
    #[arg(long, env = "AUTOMQ_AUTHORIZER", default_value = "none")]
    pub authorizer: String,

    /// Principals that bypass ACLs, `;`-separated as in Kafka's super.users, e.g.
    /// `User:admin;User:operator`.
    #[arg(long, env = "AUTOMQ_SUPER_USERS", default_value = "")]
    pub super_users: String,

    /// Allow an operation on a resource that has no ACL at all (allow.everyone.if.no.acl.found);
    /// off by default, as in Kafka.
    #[arg(long, env = "AUTOMQ_ALLOW_EVERYONE_IF_NO_ACL_FOUND", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_everyone_if_no_acl_found: bool,

    /// Partitions of the internal transaction state topic (created on first use).
    #[arg(long, env = "AUTOMQ_TRANSACTION_STATE_PARTITIONS", default_value_t = 8)]
    pub transaction_state_partitions: i32,

    /// Largest transaction.timeout.ms a producer may ask for (transaction.max.timeout.ms).
    #[arg(long, env = "AUTOMQ_TRANSACTION_MAX_TIMEOUT_MS", default_value_t = 900_000)]
    pub transaction_max_timeout_ms: i32,

    /// How often retention and compaction run.
    #[arg(long, env = "AUTOMQ_LOG_CLEANER_INTERVAL_MS", default_value_t = 30_000)]
    pub log_cleaner_interval_ms: u64,

    /// How often this broker heartbeats to the controller.
    #[arg(long, env = "AUTOMQ_HEARTBEAT_INTERVAL_MS", default_value_t = 500)]
    pub heartbeat_interval_ms: u64,

    /// A broker not heard from for this long is dead: its S3 WAL is taken over and its
    /// partitions move (file-WAL brokers' partitions wait for them).
    #[arg(long, env = "AUTOMQ_SESSION_TIMEOUT_MS", default_value_t = 4_000)]
    pub session_timeout_ms: u64,

    /// How long brokers tolerate an unreachable controller before electing another.
    #[arg(long, env = "AUTOMQ_CONTROLLER_TIMEOUT_MS", default_value_t = 4_000)]
    pub controller_timeout_ms: u64,
}

/// Where the WAL lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalChoice {
    File(PathBuf),
    S3,
}

impl BrokerConfig {
    /// Defaults for tests and embedding: everything under `data_dir`, ports chosen by the
    /// caller.
    pub fn embedded(data_dir: impl Into<PathBuf>, listen: SocketAddr, http_listen: SocketAddr) -> Self {
        let mut config = BrokerConfig::parse_from(["automq-broker"]);
        config.data_dir = data_dir.into();
        config.listen = listen;
        config.http_listen = http_listen;
        config
    }

    /// The SASL mechanisms the listener requires (empty: none).
    pub fn sasl(&self) -> Result<Vec<crate::security::sasl::SaslMechanism>, String> {
        self.sasl_mechanisms
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
            .map(|m| {
                crate::security::sasl::SaslMechanism::parse(m).ok_or_else(|| {
                    format!("--sasl-mechanisms: unknown mechanism {m:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
                })
            })
            .collect()
    }

    /// The Kafka listeners these settings describe.
    pub fn listener_specs(&self) -> Result<Vec<crate::security::listener::ListenerSpec>, String> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        crate::security::listener::specs(&crate::security::listener::ListenerFlags {
            listen: Some(self.listen),
            advertised_listener: self.advertised_listener.as_deref(),
            listeners: &self.listeners,
            advertised_listeners: &self.advertised_listeners,
            protocol_map: &self.listener_security_protocol_map,
            options: &self.listener_options,
            sasl: self.sasl()?,
            tls,
        })
    }

    /// The node id this broker runs as: `--node-id` plus `--node-id-base`.
    pub fn effective_node_id(&self) -> Result<i32, String> {
        self.node_id.checked_add(self.node_id_base).filter(|id| *id >= 0).ok_or_else(|| {
            format!("--node-id {} plus --node-id-base {} is not a valid node id", self.node_id, self.node_id_base)
        })
    }

    pub fn object_store_url(&self) -> String {
        self.object_store.clone().unwrap_or_else(|| {
            let dir = self.data_dir.join("objects");
            let abs = std::path::absolute(&dir).unwrap_or(dir);
            format!("file://{}", abs.display())
        })
    }

    pub fn wal_choice(&self) -> Result<WalChoice, String> {
        match self.wal.as_str() {
            "file" => Ok(WalChoice::File(self.data_dir.join("wal"))),
            "s3" => Ok(WalChoice::S3),
            other => match other.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(WalChoice::File(PathBuf::from(path))),
                _ => Err(format!("--wal must be `file`, `file:PATH` or `s3`, not {other:?}")),
            },
        }
    }

    /// The file WAL's settings for `dir`, refusing segments that could not hold the largest
    /// batch the broker accepts by default.
    pub fn file_wal_config(&self, dir: &std::path::Path) -> Result<automq_storage::wal::FileWalConfig, String> {
        let segment_bytes = self.file_wal_segment_bytes;
        let least = (self.message_max_bytes as u64 + 64 * 1024).next_multiple_of(4096);
        if segment_bytes < least || !segment_bytes.is_multiple_of(4096) {
            return Err(format!(
                "--file-wal-segment-bytes {segment_bytes} must be a multiple of 4096 and at least {least} \
                 (message.max.bytes {} plus framing)",
                self.message_max_bytes
            ));
        }
        Ok(automq_storage::wal::FileWalConfig { segment_bytes, ..automq_storage::wal::FileWalConfig::new(dir) })
    }

    pub fn log_cleaner_interval(&self) -> Duration {
        Duration::from_millis(self.log_cleaner_interval_ms.max(100))
    }

    pub fn pool_rules(&self) -> Result<crate::cluster::placement::PoolRules, String> {
        crate::cluster::placement::PoolRules::parse(&self.default_pool, &self.pool_rules)
    }

    /// The cluster protocol's settings. Call [`Self::pool_rules`] first to refuse bad rules;
    /// here they fall back to the defaults.
    pub fn cluster_config(&self) -> crate::cluster::ClusterConfig {
        crate::cluster::ClusterConfig {
            pool_rules: self.pool_rules().unwrap_or_default(),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms.max(10)),
            session_timeout: Duration::from_millis(self.session_timeout_ms.max(100)),
            controller_timeout: Duration::from_millis(self.controller_timeout_ms.max(100)),
            ..crate::cluster::ClusterConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_embedded() {
        let c = BrokerConfig::parse_from(["automq-broker", "--data-dir", "/tmp/x"]);
        assert_eq!(c.object_store_url(), "file:///tmp/x/objects");
        assert_eq!(c.wal_choice().unwrap(), WalChoice::File(PathBuf::from("/tmp/x/wal")));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        let c = BrokerConfig::parse_from(["automq-broker", "--wal", "file:/fast/wal"]);
        assert_eq!(c.wal_choice().unwrap(), WalChoice::File(PathBuf::from("/fast/wal")));
        let c = BrokerConfig::parse_from(["automq-broker", "--file-wal-segment-bytes", "8388608"]);
        assert_eq!(c.file_wal_config(std::path::Path::new("/w")).unwrap().segment_bytes, 8 << 20);
        let c = BrokerConfig::parse_from(["automq-broker", "--file-wal-segment-bytes", "1048576"]);
        assert!(c.file_wal_config(std::path::Path::new("/w")).unwrap_err().contains("message.max.bytes 1048588"));
        let c = BrokerConfig::parse_from(["automq-broker", "--file-wal-segment-bytes", "8388609"]);
        assert!(c.file_wal_config(std::path::Path::new("/w")).unwrap_err().contains("multiple of 4096"));
        let c = BrokerConfig::parse_from(["automq-broker", "--node-id", "3", "--node-id-base", "1000"]);
        assert_eq!(c.effective_node_id(), Ok(1003));
        let c = BrokerConfig::parse_from(["automq-broker", "--node-id", "3", "--node-id-base", "2147483647"]);
        assert!(c.effective_node_id().unwrap_err().contains("not a valid node id"));
        let c = BrokerConfig::parse_from(["automq-broker", "--wal", "nvme"]);
        assert!(c.wal_choice().unwrap_err().contains("file:PATH"));
        let c = BrokerConfig::parse_from(["automq-broker", "--auto-create-topics", "false"]);
        assert!(!c.auto_create_topics);
    }
}
