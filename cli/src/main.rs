//! `automq`: the command a newcomer runs first.
//!
//! - `automq standalone [--data-dir DIR]`: a Kafka-compatible broker and a MySQL-protocol query
//!   node in one process, on a local directory (file WAL, objects under `DIR/objects`), or on
//!   an S3-compatible bucket with `--s3 URL`.
//! - `automq demo`: the reference workload in small against a running standalone or cluster
//!   (Debezium change events of a booking platform, routine loads, the merchant homepage).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;
use automq_warehouse::node::{QueryNodeConfig, RunningQueryNode};
use clap::{Parser, Subcommand};

mod demo;

#[derive(Debug, Parser)]
#[command(name = "automq", version, about = "Kafka-compatible streaming on object storage, with a real-time warehouse")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker and a query node in one process (embedded defaults: a local directory).
    Standalone(Standalone),
    /// Play a booking platform's change events into a running standalone or cluster, load
    /// them into tables and show the merchant homepage refreshing as they arrive.
    Demo(demo::DemoArgs),
}

#[derive(Debug, clap::Args)]
struct Standalone {
    /// Directory for the write-ahead log and (without --s3) the objects.
    #[arg(long, env = "AUTOMQ_DATA_DIR", default_value = "automq-data")]
    data_dir: PathBuf,
    /// Keep objects in an S3-compatible bucket instead:
    /// `s3://bucket/prefix?endpoint=http://host:port&region=..&path_style=true`
    /// (credentials from the usual AWS variables).
    #[arg(long, env = "AUTOMQ_S3")]
    s3: Option<String>,
    /// Write-ahead log: `file` (low latency, in the data directory) or `s3` (needs --s3).
    #[arg(long, env = "AUTOMQ_WAL", default_value = "file")]
    wal: String,
    /// Kafka listener.
    #[arg(long, env = "AUTOMQ_LISTEN", default_value = "127.0.0.1:9092")]
    kafka_listen: SocketAddr,
    /// MySQL listener of the query node.
    #[arg(long, env = "AUTOMQ_MYSQL_LISTEN", default_value = "127.0.0.1:9030")]
    mysql_listen: SocketAddr,
    /// Broker HTTP listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "AUTOMQ_HTTP_LISTEN", default_value = "127.0.0.1:9644")]
    http_listen: SocketAddr,
    /// Query-node HTTP listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "AUTOMQ_QUERY_HTTP_LISTEN", default_value = "127.0.0.1:8030")]
    query_http_listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    automq_common::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => standalone(args).await,
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("automq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn standalone(args: Standalone) -> anyhow::Result<()> {
    if args.wal == "s3" && args.s3.is_none() {
        anyhow::bail!("--wal s3 needs --s3 URL");
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", args.data_dir.display()))?;
    let mut broker_config = BrokerConfig::embedded(&args.data_dir, args.kafka_listen, args.http_listen);
    broker_config.object_store = args.s3.clone();
    broker_config.wal = args.wal.clone();
    let mut node_config = QueryNodeConfig::embedded(&args.data_dir, args.mysql_listen, args.query_http_listen);
    node_config.object_store = args.s3.clone();

    let broker =
        RunningBroker::start(broker_config).await.map_err(|e| anyhow::anyhow!("cannot start the broker: {e}"))?;
    let node = match RunningQueryNode::start(node_config).await {
        Ok(n) => n,
        Err(e) => {
            let _ = broker.shutdown().await;
            anyhow::bail!("cannot start the query node: {e}");
        }
    };
    let store = args.s3.clone().unwrap_or_else(|| format!("{}/objects", args.data_dir.display()));
    println!("automq standalone is running (data: {store}, WAL: {})", args.wal);
    println!("  Kafka bootstrap: {}", broker.kafka_addr);
    println!("  MySQL:           mysql -h {} -P {} -u root", node.mysql_addr.ip(), node.mysql_addr.port());
    println!(
        "  metrics:         http://{}/metrics (broker), http://{}/metrics (query node)",
        broker.http_addr, node.http_addr
    );
    println!("Ctrl-C stops it; acknowledged data is kept.");
    automq_common::shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    broker
        .shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("broker shutdown failed (the WAL is recovered on the next start): {e}"))?;
    println!("automq standalone stopped");
    Ok(())
}
