//! `automq-query-node`: MySQL-protocol SQL over tables in object storage.

use clap::Parser;

use automq_warehouse::node::{QueryNodeConfig, RunningQueryNode};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    automq_common::init_tracing();
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
    automq_common::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}
