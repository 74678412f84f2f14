//! DescribeCluster (key 60): cluster id, controller, and the registered brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, AdvertisedEndpoint, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller, CLUSTER_NAME};

/// `endpoint_type` 1 = brokers; 2 = controllers (KIP-919), which we do not list separately.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
/// Kafka's "authorized operations were not requested" sentinel.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// No permission is needed (as in Kafka); with `include_cluster_authorized_operations`
/// the answer says what the caller may do with the cluster (KIP-430).
pub fn handle(
    broker: &Broker,
    request: &Request,
    here: &AdvertisedEndpoint,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeClusterRequest = decode(request)?;
    let image = broker.controller.image();
    let authorized_operations = if req.include_cluster_authorized_operations {
        cluster_authorized_operations(caller)
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(image.cluster_id.clone().unwrap_or_default()))
        // A live broker, as KRaft brokers answer (see Metadata).
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(authorized_operations);
    if request.version() >= 1 {
        response = response.with_endpoint_type(req.endpoint_type);
        if req.endpoint_type != ENDPOINT_TYPE_BROKERS {
            return respond(
                request,
                &response
                    .with_error_code(ResponseError::UnsupportedEndpointType.code())
                    .with_error_message(Some(str_bytes(
                        "Only broker endpoints (endpoint_type 1) can be described",
                    ))),
            );
        }
    }
    let brokers = image
        .brokers
        .values()
        .filter_map(|b| {
            let (host, port) = here.host_port(b)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    respond(request, &response.with_brokers(brokers))
}

/// What the caller may do with the cluster (KIP-430), as Kafka's `AuthHelper` computes
/// it: 0 for a caller that may not DESCRIBE the cluster.
pub fn cluster_authorized_operations(caller: &Caller) -> i32 {
    if caller.allowed_on_cluster(op::DESCRIBE) {
        caller.authorized_operations(resource::CLUSTER, CLUSTER_NAME)
    } else {
        0
    }
}
