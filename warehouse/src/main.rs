//! `automq-query-node`: MySQL-protocol SQL over tables in object storage.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use automq_warehouse::node::{QueryNodeConfig, RunningQueryNode};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("AUTOMQ_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = QueryNodeConfig::parse();
    let running = match RunningQueryNode::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the query node");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "automq-query-node: MySQL on {} (user root), metrics on http://{}/metrics",
        running.mysql_addr, running.http_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
