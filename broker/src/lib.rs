//! A Kafka-compatible broker on the automq storage engine.
//!
//! - [`server`]: the listener, framing and in-order responses; [`handlers`]: one file per
//!   Kafka API.
//! - [`broker`]: topics, partitions, producer ids; [`partition`]: a partition on its stream;
//!   [`batch`]: record batch validation; [`producers`]: idempotent producer state.
//! - [`groups`]: the consumer group coordinator and committed offsets.
//! - [`cluster`]: many brokers on one bucket as one cluster (controller, failover, balancing).
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, the internal and admin APIs.

pub mod alloc;
pub mod batch;
pub mod broker;
pub mod cleaner;
pub mod cluster;
pub mod config;
mod error;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod link;
pub mod metrics;
pub mod partition;
pub mod producers;
pub mod security;
pub mod server;
pub mod topics;
pub mod txn;

pub use error::{Error, Result};

/// See [`alloc`]: keeps a forged array length in a request from aborting the process.
#[global_allocator]
static GLOBAL: alloc::LazyLargeAllocator = alloc::LazyLargeAllocator;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running broker: its listeners and background tasks.
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<broker::Broker>,
    /// The first Kafka listener's bound address.
    pub kafka_addr: std::net::SocketAddr,
    /// Every Kafka listener's name and bound address.
    pub kafka_addrs: Vec<(String, std::net::SocketAddr)>,
    pub http_addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Starts storage, joins the cluster, starts the Kafka and HTTP listeners and the log
    /// cleaner, and waits (a while) until the broker leads what it is assigned.
    pub async fn start(config: config::BrokerConfig) -> Result<Self> {
        let mut specs = config.listener_specs().map_err(error::Error::Config)?;
        let mut kafka = Vec::new();
        for spec in &mut specs {
            let socket = TcpListener::bind(spec.bind).await.map_err(|e| {
                error::Error::Config(format!("cannot listen on {} (listener {}): {e}", spec.bind, spec.name))
            })?;
            // Port 0 means "any": advertise the port really bound.
            let bound = socket.local_addr()?;
            spec.bind = bound;
            if spec.advertised.is_none() {
                spec.advertised = Some((bound.ip().to_string(), i32::from(bound.port())));
            }
            kafka.push((spec.clone(), socket));
        }
        let kafka_addrs: Vec<_> = specs.iter().map(|s| (s.name.clone(), s.bind)).collect();
        let kafka_addr = kafka_addrs[0].1;
        let http = TcpListener::bind(config.http_listen).await?;
        let http_addr = http.local_addr()?;
        let mut config = config;
        config.node_id = config.effective_node_id().map_err(error::Error::Config)?;
        config.node_id_base = 0;
        // Port 0 means "any": advertise the ports really bound.
        if config.advertised_listener.is_none() {
            config.listen = kafka_addr;
        }
        if config.advertised_http.is_none() {
            config.http_listen = http_addr;
        }
        let cleaner_every = config.log_cleaner_interval();
        let (shutdown, rx) = watch::channel(false);
        let (broker, mut tasks) = broker::Broker::start(config, specs, http, rx.clone()).await?;
        // Clients that connect meanwhile wait in the listen backlog until the broker leads
        // what it is assigned, instead of being told NOT_LEADER_OR_FOLLOWER.
        broker.wait_ready(std::time::Duration::from_secs(30)).await;
        if let (Some(user), Some(password)) =
            (&broker.config.sasl_bootstrap_user, &broker.config.sasl_bootstrap_password)
        {
            security::credentials::bootstrap(&broker, user, password)
                .await
                .map_err(|e| error::Error::Config(format!("cannot create the bootstrap user {user:?}: {e}")))?;
        }
        if let Some(dir) = broker.config.scram_users_dir.clone() {
            security::credentials::sync_users_dir(&broker, &dir)
                .await
                .map_err(|e| error::Error::Config(format!("--scram-users-dir: {e}")))?;
            let every = std::time::Duration::from_secs(2);
            let (b, d) = (broker.clone(), dir.clone());
            let apply = move || {
                let (b, d) = (b.clone(), d.clone());
                async move { security::credentials::sync_users_dir(&b, &d).await }
            };
            tasks.push(tokio::spawn(automq_common::users_dir::watch(dir, every, rx.clone(), apply)));
        }
        for ((_, socket), listener) in kafka.into_iter().zip(broker.listeners.iter()) {
            tasks.push(tokio::spawn(server::serve(socket, listener.clone(), broker.clone(), rx.clone())));
        }
        let cleaner = broker.clone();
        let mut cleaner_rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(cleaner_every) => cleaner.run_log_cleaner().await,
                    _ = cleaner_rx.changed() => return,
                }
            }
        }));
        tasks.push(groups::GroupCoordinator::spawn_expiry(broker.clone(), rx.clone()));
        tasks.push(txn::TransactionCoordinator::spawn_expiry(broker.clone(), rx));
        for (name, addr) in &kafka_addrs {
            tracing::info!(listener = %name, %addr, "Kafka listener");
        }
        tracing::info!(%kafka_addr, %http_addr, "listening");
        Ok(RunningBroker { broker, kafka_addr, kafka_addrs, http_addr, shutdown, tasks })
    }

    /// Stops listening, uploads everything acknowledged and closes storage.
    pub async fn shutdown(self) -> Result<()> {
        // Hand off and upload while the cluster tasks still run, then stop them.
        let result = self.broker.shutdown().await;
        self.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        result
    }
}
