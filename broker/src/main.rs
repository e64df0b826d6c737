//! `automq-broker`: a Kafka-compatible broker keeping its data in object storage.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("AUTOMQ_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = BrokerConfig::parse();
    let running = match RunningBroker::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the broker");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("automq-broker: Kafka on {}, metrics on http://{}/metrics", running.kafka_addr, running.http_addr);
    wait_for_signal().await;
    tracing::info!("shutting down: uploading acknowledged data");
    match running.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shutdown failed; the WAL will be recovered on the next start");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
