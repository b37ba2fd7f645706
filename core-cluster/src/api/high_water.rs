//! `ProducerHighWaterRequest`: where a producer's records in one shard end.
//!
//! An edge agent asks this at start (and before its first forward when the
//! core was unreachable then) to find out whether its buffer fell behind
//! what the core already holds under its producer id: a restored or cloned
//! data directory would number new records at positions the shard drops as
//! duplicates. The answer comes from the shard's leader after a
//! linearizable read (leadership confirmed by a quorum, state machine
//! applied up to the commit point), so a forward the edge saw acknowledged
//! is never missing from it. Access is the forwards' rule: `produce` on the
//! stream (checked by the dispatcher) and the producer id registered to the
//! caller.

use crate::node::Node;
use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, RaftError};
use std::time::Duration;
use strata_runtime::server::Caller;
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::{self, RemoteError};

/// How long the leader may take to confirm its leadership and catch its
/// state machine up before the edge is told to retry.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one `ProducerHighWaterRequest` with a `ProducerHighWater`.
pub async fn producer_high_water(
    node: &Node,
    r: fb::ProducerHighWaterRequest<'_>,
    caller: &Caller,
) -> Result<Bytes, RemoteError> {
    let id = r.producer_id();
    if id == 0 {
        return Err(RemoteError::new(
            ErrorCode::InvalidArgument,
            "producer_id 0 is reserved",
        ));
    }
    node.check_producer_owner(id, caller)?;
    let g = node
        .looked_up_fresh(|| node.shard_leader_for(r.stream(), r.shard()))
        .await?;
    match tokio::time::timeout(READ_TIMEOUT, g.raft.ensure_linearizable()).await {
        Ok(Ok(_)) => {}
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            return Err(RemoteError::not_leader(
                format!("not the leader; leader is {:?}", f.leader_id),
                f.leader_id.and_then(|l| node.client_addr(l)),
            ))
        }
        Ok(Err(e)) => {
            return Err(RemoteError::new(
                ErrorCode::Unavailable,
                format!("raft: {e}"),
            ))
        }
        Err(_) => {
            return Err(RemoteError::new(
                ErrorCode::Unavailable,
                format!(
                    "the shard leader could not confirm its state within {} ms",
                    READ_TIMEOUT.as_millis()
                ),
            ))
        }
    }
    let (producer_next_seq, sealed) = g.sm.read(|s| (s.producer_next_seq(id), s.sealed));
    let shard = r.shard();
    Ok(wire::response(fb::ResponseBody::ProducerHighWater, |fbb| {
        fb::ProducerHighWater::create(
            fbb,
            &fb::ProducerHighWaterArgs {
                shard,
                producer_next_seq,
                sealed,
            },
        )
        .as_union_value()
    }))
}

#[cfg(test)]
mod tests {
    use crate::api::access;
    use strata_protocol::acl::Operation;
    use strata_schema::fb;
    use strata_schema::wire;

    #[test]
    fn the_request_needs_produce_on_its_stream_like_a_forward() {
        let req = wire::request(fb::RequestBody::ProducerHighWaterRequest, |fbb| {
            let stream = Some(fbb.create_string("telemetry"));
            fb::ProducerHighWaterRequest::create(
                fbb,
                &fb::ProducerHighWaterRequestArgs {
                    stream,
                    shard: 3,
                    producer_id: 9,
                },
            )
            .as_union_value()
        });
        let r = wire::decode_request(&req).unwrap();
        assert_eq!(access::needs(&r), Some((Operation::Produce, "telemetry")));
    }
}
