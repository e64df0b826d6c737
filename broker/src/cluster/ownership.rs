//! Each broker leads exactly the partitions assigned to it: on every metadata change it opens
//! the ones newly assigned and closes the ones assigned away.
//!
//! A move copies no data. The old owner stops serving the partition (requests get
//! NOT_LEADER_OR_FOLLOWER), waits for its in-flight appends to be durable, uploads what the
//! WAL holds of it and closes its stream (a catalog record, releasing it). The new owner,
//! seeing the stream released, opens it at the next epoch, which fences any former owner,
//! and reads from the committed objects. The new owner also opens a stream still owned by a
//! dead broker whose WAL the controller took over (everything it acknowledged is committed).
//!
//! Consumer groups move with their `__consumer_offsets` partition: loaded from it before the
//! partition serves, unloaded when it closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::metadata::state::kv_digest;
use automq_storage::metadata::CatalogRecord;

use super::records::{broker_key, ControllerClaim, CONTROLLER_KEY};
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::partition::Partition;

/// Reconciles this broker's partitions with the assignments until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut changes = broker.engine.catalog().watch();
    let mut last_load = Instant::now();
    loop {
        if broker.cluster.fenced().is_some() {
            drop_everything(&broker);
        } else {
            broker.sync_topics();
            reconcile(&broker);
        }
        if last_load.elapsed() >= Duration::from_secs(1) {
            measure_load(&broker, last_load.elapsed());
            last_load = Instant::now();
        }
        let m = &broker.metrics.cluster;
        m.controller.set(i64::from(broker.cluster.is_controller()));
        m.brokers_alive.set(broker.cluster.view().brokers.values().filter(|b| b.alive).count() as i64);
        m.partitions_led.set(broker.topics().iter().map(|t| t.led_partitions().len() as i64).sum());
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

fn reconcile(broker: &Arc<Broker>) {
    let view = broker.cluster.view();
    let state = broker.engine.catalog().state();
    let me = broker.cluster.node_id();
    // Nothing is opened before the controller has registered this incarnation. Until then the
    // cluster may still hold this node's previous incarnation for dead and hand the streams it
    // owned (owned by this node id) to others; this incarnation must not be writing them.
    let incarnation = broker.cluster.identity.read().incarnation;
    if !view.brokers.get(&me).is_some_and(|b| b.alive && b.incarnation == incarnation) {
        return;
    }
    let mut to_close = Vec::new();
    for topic in broker.topics() {
        for i in 0..topic.partition_count() {
            let index = i as i32;
            let key = (topic.meta.name.clone(), index);
            if broker.moving.lock().contains(&key) {
                continue;
            }
            let want = view.assigned(&topic.meta.name, index) == Some(me);
            let open = topic.led(index).is_ok();
            if want && !open {
                let stream = topic.meta.partitions[i];
                let owner = state.streams.get(&stream).and_then(|s| s.owner).map(|o| o as i32);
                let free = match owner {
                    None => true,
                    Some(o) if o == me => true,
                    // A former owner that died with its WAL taken over, or that the cluster
                    // never knew (a pre-cluster single node).
                    Some(o) => view.brokers.get(&o).is_none_or(|b| b.released()),
                };
                if free {
                    if let Some(s) = state.streams.get(&stream) {
                        tracing::info!(topic = %key.0, partition = index, stream, previous_owner = ?owner, epoch = s.epoch, end_offset = s.end_offset, "opening partition");
                    }
                    broker.moving.lock().insert(key.clone());
                    tokio::spawn(open_partition(broker.clone(), key, stream));
                }
            } else if !want && open {
                broker.moving.lock().insert(key.clone());
                to_close.push(key);
            }
        }
    }
    if !to_close.is_empty() {
        tokio::spawn(close_partitions(broker.clone(), to_close));
    }
}

async fn open_partition(broker: Arc<Broker>, key: (String, i32), stream: u64) {
    let (name, index) = (&key.0, key.1);
    let started = Instant::now();
    match Partition::open(&broker.engine, name, index, stream).await {
        Ok(partition) => {
            if name == OFFSETS_TOPIC {
                if let Err(e) = broker.groups.load_partition(&broker, &partition).await {
                    tracing::warn!(partition = index, error = %e, "cannot load consumer groups; will retry");
                    broker.engine.forget_stream(stream);
                    broker.moving.lock().remove(&key);
                    return;
                }
            }
            if name == crate::txn::TXN_TOPIC {
                if let Err(e) = broker.txns.load_partition(&broker, &partition).await {
                    tracing::warn!(partition = index, error = %e, "cannot load transaction state; will retry");
                    broker.engine.forget_stream(stream);
                    broker.moving.lock().remove(&key);
                    return;
                }
            }
            broker.bucket_txns.forget(stream);
            match broker.topic(name) {
                Some(t) if t.meta.partitions.get(index as usize) == Some(&stream) => {
                    t.set_partition(index as usize, Some(partition));
                    broker.metrics.partition_opened(started.elapsed());
                    tracing::info!(topic = %name, partition = index, took_ms = started.elapsed().as_millis() as u64, "partition opened");
                }
                _ => broker.engine.forget_stream(stream),
            }
        }
        Err(e) => tracing::warn!(topic = %name, partition = index, error = %e, "cannot open partition; will retry"),
    }
    broker.moving.lock().remove(&key);
}

/// Hands partitions off together: one upload carries all their data (see
/// `StreamEngine::close_streams`).
async fn close_partitions(broker: Arc<Broker>, keys: Vec<(String, i32)>) {
    let started = Instant::now();
    let mut closing = Vec::new();
    for key in &keys {
        let (name, index) = (&key.0, key.1);
        let Some(topic) = broker.topic(name) else { continue };
        let Ok(partition) = topic.led(index) else { continue };
        // Stop serving first: from here requests get NOT_LEADER_OR_FOLLOWER.
        topic.set_partition(index as usize, None);
        if name == OFFSETS_TOPIC {
            broker.groups.unload_partition(index, &broker);
        }
        if name == crate::txn::TXN_TOPIC {
            broker.txns.unload_partition(&broker, index);
        }
        closing.push((key.clone(), partition.stream_id));
    }
    let streams: Vec<u64> = closing.iter().map(|(_, s)| *s).collect();
    let results = broker.engine.close_streams(&streams).await;
    for ((key, stream), result) in closing.iter().zip(results) {
        match result {
            Ok(()) => {
                broker.metrics.partition_closed(started.elapsed());
                tracing::info!(topic = %key.0, partition = key.1, took_ms = started.elapsed().as_millis() as u64, "partition handed off");
            }
            Err(e) => {
                // Taken over already (this broker was presumed dead): nothing of it is ours.
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "partition closed without its final upload");
                broker.engine.forget_stream(*stream);
            }
        }
    }
    let mut moving = broker.moving.lock();
    for key in &keys {
        moving.remove(key);
    }
}

/// A fenced broker serves nothing more.
fn drop_everything(broker: &Broker) {
    for topic in broker.topics() {
        for p in topic.led_partitions() {
            topic.set_partition(p.index as usize, None);
            broker.engine.forget_stream(p.stream_id);
        }
    }
    broker.groups.unload_all();
}

/// Bytes per second in and out of each partition led here since the last measurement.
fn measure_load(broker: &Broker, period: Duration) {
    let secs = period.as_secs_f64().max(0.001);
    let mut load = Vec::new();
    for topic in broker.topics() {
        for p in topic.led_partitions() {
            let (bytes_in, bytes_out) = p.take_traffic();
            load.push(super::rpc::PartitionLoad {
                topic: topic.meta.name.clone(),
                partition: p.index,
                bytes_in: bytes_in as f64 / secs,
                bytes_out: bytes_out as f64 / secs,
            });
        }
    }
    *broker.cluster.load.lock() = load;
}

/// A planned shutdown: asks the controller to move this broker's partitions elsewhere and
/// waits (up to `timeout`) until they are handed off, when another broker can take them.
pub async fn hand_off(broker: &Broker, timeout: Duration) {
    let cluster = &broker.cluster;
    cluster.set_leaving();
    let me = cluster.node_id();
    let deadline = Instant::now() + timeout;
    let others = |v: &super::records::ClusterView| v.brokers.values().any(|b| b.node_id != me && b.eligible());
    if others(&cluster.view()) && broker.sizes().get("partitions").is_none_or(|n| *n != 0) {
        tracing::info!("handing partitions off before shutting down");
        while Instant::now() < deadline {
            let view = cluster.view();
            let Some(raw) = view.raw.get(&broker_key(me)).cloned() else { break };
            let Ok(mut record) = serde_json::from_str::<super::records::BrokerRecord>(&raw) else { break };
            if record.leaving {
                break;
            }
            record.leaving = true;
            let Ok(value) = serde_json::to_string(&record) else { break };
            let records = vec![
                CatalogRecord::KvExpect { key: broker_key(me), digest: Some(kv_digest(&raw)) },
                CatalogRecord::KvPut { key: broker_key(me), value },
            ];
            match broker.engine.catalog().submit(records).await {
                Ok(_) => break,
                Err(automq_storage::Error::PreconditionFailed(_)) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot announce the shutdown; partitions wait for the session timeout");
                    break;
                }
            }
        }
        while Instant::now() < deadline {
            let led: usize = broker.topics().iter().map(|t| t.led_partitions().len()).sum();
            if led == 0 && broker.moving.lock().is_empty() {
                tracing::info!("every partition handed off");
                break;
            }
            if !others(&cluster.view()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The last step of a planned shutdown: the controller gives up its role, so the next one is
/// elected at once instead of after the controller timeout.
pub async fn abdicate(broker: &Broker) {
    let cluster = &broker.cluster;
    if cluster.is_controller() {
        let view = cluster.view();
        let (Some(raw), Some(claim)) = (view.raw.get(CONTROLLER_KEY), view.controller.clone()) else { return };
        let Ok(value) = serde_json::to_string(&ControllerClaim { resigned: true, ..claim }) else { return };
        let records = vec![
            CatalogRecord::KvExpect { key: CONTROLLER_KEY.into(), digest: Some(kv_digest(raw)) },
            CatalogRecord::KvPut { key: CONTROLLER_KEY.into(), value },
        ];
        if let Err(e) = broker.engine.catalog().submit(records).await {
            tracing::warn!(error = %e, "cannot give up the controller role; the others elect after the timeout");
        }
    }
}
