//! DeleteGroups: removes Empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`). Groups with members get NON_EMPTY_GROUP, unknown ones
//! GROUP_ID_NOT_FOUND.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use super::count_error;
use super::group::GroupState;
use super::records::{self, RecordKey};
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

pub(super) async fn handle(broker: &Arc<Broker>, r: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    let api = crate::handlers::api_name(ApiKey::DeleteGroups);
    let mut results = Vec::with_capacity(r.groups_names.len());
    for id in r.groups_names {
        let code = delete(broker, id.0.as_str()).await.err().map(|e| e.code()).unwrap_or(0);
        count_error(broker, &api, code);
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(crate) async fn delete(broker: &Arc<Broker>, group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    GroupCoordinator::coordinates(broker, group_id)?;
    let coordinator = &broker.groups;
    // No commit is between enqueue and apply while the tombstones go in.
    let _exclusive = coordinator.commits.write().await;
    let write = {
        let mut groups = coordinator.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        match group.state {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut tombstones: Vec<(RecordKey, Option<bytes::Bytes>)> = group
            .offsets
            .keys()
            .map(|(topic, partition)| {
                (RecordKey::Offset { group: group_id.to_string(), topic: topic.clone(), partition: *partition }, None)
            })
            .collect();
        tombstones.push((RecordKey::Group { group: group_id.to_string() }, None));
        let write = records::enqueue(broker, group_id, &tombstones).map_err(|e| {
            tracing::warn!(group = group_id, error = %e, "cannot delete the group");
            ResponseError::CoordinatorNotAvailable
        })?;
        group.set_state(GroupState::Dead);
        groups.remove(group_id);
        write
    };
    write.durable(broker).await.map_err(|e| {
        tracing::warn!(group = group_id, error = %e, "cannot delete the group");
        ResponseError::CoordinatorNotAvailable
    })?;
    tracing::info!(group = group_id, "group deleted");
    Ok(())
}
