//! DescribeCluster (the admin client's view of brokers and the controller): the live brokers
//! with their addresses on the listener the request came in through.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub(super) fn handle(
    broker: &Arc<Broker>,
    request: DescribeClusterRequest,
    listener: Option<&str>,
) -> DescribeClusterResponse {
    let view = broker.cluster.view();
    let mut brokers: Vec<DescribeClusterBroker> = view
        .brokers
        .values()
        .filter(|b| b.alive)
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    if !brokers.iter().any(|b| b.broker_id.0 == broker.config.node_id) {
        // Not registered yet: the client still learns how to reach this broker.
        let (host, port) = broker.advertised_on(listener);
        brokers.push(
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.config.node_id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(broker.config.rack.clone().map(StrBytes::from_string)),
        );
    }
    let controller = view.controller.as_ref().map_or(broker.config.node_id, |c| c.node_id);
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
