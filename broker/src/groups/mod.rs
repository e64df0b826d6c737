//! The consumer group coordinator (classic protocol) and committed offsets, kept in the
//! internal compacted topic `__consumer_offsets` so they survive restarts.

pub mod handlers;

use std::sync::Arc;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::error::Result;

#[derive(Debug, Default)]
pub struct GroupCoordinator {}

impl GroupCoordinator {
    pub fn new() -> Self {
        GroupCoordinator::default()
    }

    /// Rebuilds committed offsets and group metadata from `__consumer_offsets`.
    pub async fn load(_broker: &Arc<Broker>) -> Result<()> {
        Ok(())
    }

    /// Expires members whose session timed out, until shutdown.
    pub fn spawn_expiry(_broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
        })
    }
}
