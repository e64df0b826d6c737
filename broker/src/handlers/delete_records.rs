//! DeleteRecords: moves partitions' log start offsets forward (offset -1 means the high
//! watermark).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::error::Result;

pub(super) async fn handle(broker: &Arc<Broker>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for t in request.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let result: Result<i64> = async {
                let partition = broker.led(t.name.0.as_str(), p.partition_index)?;
                let target = if p.offset == -1 { partition.offsets(&broker.engine).await?.0 } else { p.offset };
                partition.delete_records_before(&broker.engine, target).await
            }
            .await;
            partitions.push(match result {
                Ok(low) => DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low),
                Err(e) => {
                    broker.metrics.error("DeleteRecords", e.code());
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(e.code().code())
                }
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
