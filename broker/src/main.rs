//! `automq-broker`: a Kafka-compatible broker keeping its data in object storage.

use clap::Parser;

use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    automq_common::init_tracing();
    let mut config = BrokerConfig::parse();
    config.rack = config.rack.filter(|rack| !rack.trim().is_empty());
    let running = match RunningBroker::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the broker");
            return std::process::ExitCode::FAILURE;
        }
    };
    let kafka: Vec<String> = running.kafka_addrs.iter().map(|(name, addr)| format!("{addr} ({name})")).collect();
    println!("automq-broker: Kafka on {}, metrics on http://{}/metrics", kafka.join(", "), running.http_addr);
    let broker = running.broker.clone();
    let fenced = async move {
        loop {
            if let Some(why) = broker.cluster.fenced() {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = automq_common::shutdown_signal() => {}
        why = fenced => {
            // Declared dead while it was unreachable (paused, partitioned): another broker took
            // its WAL and partitions over. It acknowledged nothing since; a restart rejoins.
            tracing::error!(reason = %why, "exiting: this broker was fenced by the cluster");
            return std::process::ExitCode::from(75);
        }
    }
    tracing::info!("shutting down: uploading acknowledged data");
    match running.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shutdown failed; the WAL will be recovered on the next start");
            std::process::ExitCode::FAILURE
        }
    }
}
