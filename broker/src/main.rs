//! `automq-broker`: a Kafka-compatible broker keeping its data in object storage.

use clap::Parser;

use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    automq_common::init_tracing();
    let config = BrokerConfig::parse();
    let running = match RunningBroker::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the broker");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("automq-broker: Kafka on {}, metrics on http://{}/metrics", running.kafka_addr, running.http_addr);
    automq_common::shutdown_signal().await;
    tracing::info!("shutting down: uploading acknowledged data");
    match running.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shutdown failed; the WAL will be recovered on the next start");
            std::process::ExitCode::FAILURE
        }
    }
}
