//! DescribeCluster (the admin client's view of brokers and the controller).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub(super) fn handle(broker: &Arc<Broker>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised();
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)
            .with_rack(broker.config.rack.clone().map(StrBytes::from_string))])
        .with_cluster_authorized_operations(i32::MIN)
}
