//! ConsumerGroupDescribe (key 69): a consumer group (KIP-848) with its epochs, assignor
//! and each member's current and target assignment, as `kafka-consumer-groups
//! --describe` and `Admin.describeConsumerGroups` show them. A classic group answers
//! GROUP_ID_NOT_FOUND ("... is not a consumer group."), which makes the Java admin fall
//! back to DescribeGroups, as against Kafka.
//!
//! ACLs, as Kafka: DESCRIBE on each group, else GROUP_AUTHORIZATION_FAILED; with
//! `include_authorized_operations` the caller's operations on the group; a group whose
//! members are assigned a topic the caller may not DESCRIBE answers
//! TOPIC_AUTHORIZATION_FAILED as a whole.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_controller::MetadataImage;
use ottla_group::consumer::records::TopicPartitions as Partitions;
use ottla_protocol::frame::Request;

use super::describe_cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

/// `MemberType` (v1+) of a member speaking the consumer protocol.
const CONSUMER_MEMBER_TYPE: i8 = 1;
/// `MemberType` of a member that joined with the classic protocol (online migration).
const CLASSIC_MEMBER_TYPE: i8 = 0;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ConsumerGroupDescribeRequest = decode(request)?;
    let version = request.version();
    let mut seen = std::collections::HashSet::new();
    let lookups: Vec<_> = req
        .group_ids
        .into_iter()
        .filter(|id| seen.insert(id.to_string()))
        .map(|id| {
            let lookup = caller.allowed_on_group(op::DESCRIBE, id.as_str()).then(|| {
                let operations = if req.include_authorized_operations {
                    caller.authorized_operations(resource::GROUP, id.as_str())
                } else {
                    AUTHORIZED_OPERATIONS_OMITTED
                };
                (
                    broker.groups.describe_consumer_group(id.to_string()),
                    operations,
                )
            });
            (id, lookup)
        })
        .collect();
    let image = broker.controller.image();
    let caller = caller.clone();
    respond_later(request, async move {
        let mut groups = Vec::with_capacity(lookups.len());
        for (id, lookup) in lookups {
            let Some((described, operations)) = lookup else {
                groups.push(
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
                );
                continue;
            };
            groups.push(match described.await {
                Err(e) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
                Ok(d) if !may_describe_every_assigned_topic(&caller, &image, &d.members) => {
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(Some(str_bytes(
                            "The group has described topic(s) that the client is not authorized to describe.",
                        )))
                }
                Ok(d) => DescribedGroup::default()
                    .with_group_id(GroupId(str_bytes(d.group_id)))
                    .with_group_state(str_bytes(d.state))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(str_bytes(d.assignor_name))
                    .with_authorized_operations(operations)
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let member_type = if m.classic {
                                    CLASSIC_MEMBER_TYPE
                                } else {
                                    CONSUMER_MEMBER_TYPE
                                };
                                let member = Member::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_instance_id(m.instance_id.map(str_bytes))
                                    .with_rack_id(m.rack_id.map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .into_iter()
                                            .map(|n| TopicName(str_bytes(n)))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_topic_regex.map(str_bytes),
                                    )
                                    .with_assignment(assignment(&image, m.assignment))
                                    .with_target_assignment(assignment(
                                        &image,
                                        m.target_assignment,
                                    ));
                                if version >= 1 {
                                    member.with_member_type(member_type)
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            });
        }
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    })
}

/// With an authorizer, may the caller DESCRIBE every topic in the members' current and
/// target assignments? Kafka's `handleConsumerGroupDescribe` answers a group with any
/// other topic TOPIC_AUTHORIZATION_FAILED as a whole, rather than show part of it.
fn may_describe_every_assigned_topic(
    caller: &Caller,
    image: &MetadataImage,
    members: &[ottla_group::consumer::ConsumerMemberDescription],
) -> bool {
    if !caller.has_authorizer() {
        return true;
    }
    members
        .iter()
        .flat_map(|m| m.assignment.keys().chain(m.target_assignment.keys()))
        .filter_map(|id| image.topic_by_id(id))
        .all(|topic| caller.allowed_on_topic(op::DESCRIBE, &topic.name))
}

/// An assignment with topic names (topics deleted since are left out, as Kafka does).
fn assignment(image: &MetadataImage, partitions: Partitions) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .into_iter()
            .filter_map(|(id, ps)| {
                let topic = image.topic_by_id(&id)?;
                Some(
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(topic.name.clone())))
                        .with_partitions(ps.into_iter().collect()),
                )
            })
            .collect(),
    )
}
