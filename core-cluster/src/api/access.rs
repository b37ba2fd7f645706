//! Who may do what on the core's client port: the operation and stream each
//! request needs (a pure function of the request), the decision against
//! the catalog's rules ([`strata_protocol::acl::Acl`]) and the daemon's
//! superusers, and the identity and rule requests themselves.
//!
//! With `client_auth = "off"` there is no principal and nothing is checked
//! (a loopback test setup, warned about at start).

use strata_protocol::acl::{rule_to_fb, Acl, Denied, Grant, Operation};
use strata_runtime::server::Caller;
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::RemoteError;

/// Stream name standing for "every stream": cluster-wide operations are
/// allowed by rules whose stream pattern matches it (in practice `*`).
pub const ALL_STREAMS: &str = "*";

/// What a request needs: `None` for requests every authenticated caller
/// may send (whoami; registering its own producer id, which binds the id
/// to the caller); `ListStreams` is filtered per stream instead.
pub fn needs<'a>(req: &fb::Request<'a>) -> Option<(Operation, &'a str)> {
    use fb::RequestBody as B;
    use Operation as O;
    let all = ALL_STREAMS;
    match req.body_type() {
        B::ForwardRequest => req
            .body_as_forward_request()
            .map(|r| (O::Produce, r.stream())),
        B::ProducerHighWaterRequest => req
            .body_as_producer_high_water_request()
            .map(|r| (O::Produce, r.stream())),
        B::ProduceRequest => req
            .body_as_produce_request()
            .map(|r| (O::Produce, r.stream())),
        B::CreateStreamRequest => req
            .body_as_create_stream_request()
            .map(|r| (O::Create, r.name())),
        B::RestoreStreamRequest => req
            .body_as_restore_stream_request()
            .map(|r| (O::Alter, r.name())),
        B::ReshardRequest => req
            .body_as_reshard_request()
            .map(|r| (O::Alter, r.stream())),
        B::DescribeStreamRequest => req
            .body_as_describe_stream_request()
            .map(|r| (O::Describe, r.name())),
        B::SeekRequest => req.body_as_seek_request().map(|r| (O::Consume, r.stream())),
        B::FetchRequest => req
            .body_as_fetch_request()
            .map(|r| (O::Consume, r.stream())),
        B::SubscribeRequest => req
            .body_as_subscribe_request()
            .map(|r| (O::Consume, r.stream())),
        B::GroupHeartbeatRequest => req
            .body_as_group_heartbeat_request()
            .map(|r| (O::Consume, r.stream())),
        B::ClusterStatusRequest | B::AclListRequest => Some((O::Describe, all)),
        B::ChangeMembershipRequest
        | B::AclChangeRequest
        | B::AwsKeyIssueRequest
        | B::AwsKeyRevokeRequest => Some((O::Admin, all)),
        // Secrets only for those who verify signatures (edge agents).
        B::AwsKeyListRequest => req.body_as_aws_key_list_request().map(|r| {
            (
                if r.with_secrets() {
                    O::Verify
                } else {
                    O::Describe
                },
                all,
            )
        }),
        B::DeleteStreamRequest => req
            .body_as_delete_stream_request()
            .map(|r| (O::Admin, r.name())),
        B::SetRetentionRequest => req
            .body_as_set_retention_request()
            .map(|r| (O::Alter, r.name())),
        // ListStreams is filtered; WhoAmI and RegisterProducer are open to
        // every authenticated caller; an unknown type is refused later.
        _ => None,
    }
}

/// The typed reply of a refusal.
pub fn denied(d: &Denied) -> RemoteError {
    RemoteError::new(ErrorCode::PermissionDenied, d.to_string())
}

/// Decides a request: `Ok(Grant::All)` without client authentication.
pub fn authorize(
    acl: &Acl,
    superusers: &[String],
    caller: &Caller,
    need: Option<(Operation, &str)>,
) -> Result<Grant, RemoteError> {
    let (Some(principal), Some((op, stream))) = (caller.principal.as_deref(), need) else {
        return Ok(Grant::All);
    };
    acl.authorize(superusers, principal, op, stream)
        .map_err(|d| denied(&d))
}

/// Whether the caller may see `stream` in a listing.
pub fn may_describe(acl: &Acl, superusers: &[String], caller: &Caller, stream: &str) -> bool {
    authorize(acl, superusers, caller, Some((Operation::Describe, stream))).is_ok()
}

/// Checks every record key of a batch against a key-prefix grant.
pub fn check_keys(
    grant: &Grant,
    caller: &Caller,
    stream: &str,
    batch: &[u8],
) -> Result<(), RemoteError> {
    if matches!(grant, Grant::All) {
        return Ok(());
    }
    let b = strata_schema::batch::open(batch)
        .map_err(|e| RemoteError::new(ErrorCode::MalformedRequest, e.to_string()))?;
    for rec in b.records() {
        grant
            .check_key(caller.name(), stream, rec.key().unwrap_or(""))
            .map_err(|d| denied(&d))?;
    }
    Ok(())
}

/// An `AclList` reply.
pub fn acl_reply(acl: &Acl, added_id: u64) -> bytes::Bytes {
    strata_schema::wire::response(fb::ResponseBody::AclList, |fbb| {
        let rules: Vec<_> = acl.rules.iter().map(|r| rule_to_fb(fbb, r)).collect();
        let rules = Some(fbb.create_vector(&rules));
        fb::AclList::create(
            fbb,
            &fb::AclListArgs {
                rules,
                version: acl.version,
                added_id,
            },
        )
        .as_union_value()
    })
}

/// A `WhoAmI` reply.
pub fn whoami_reply(caller: &Caller, superusers: &[String]) -> bytes::Bytes {
    let name = caller.name().to_string();
    let superuser = caller.principal.is_none() || superusers.contains(&name);
    strata_schema::wire::response(fb::ResponseBody::WhoAmI, |fbb| {
        let principal = Some(fbb.create_string(&name));
        fb::WhoAmI::create(
            fbb,
            &fb::WhoAmIArgs {
                principal,
                superuser,
            },
        )
        .as_union_value()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_schema::wire;

    fn need_of(req: &bytes::Bytes) -> Option<(Operation, String)> {
        let r = wire::decode_request(req).unwrap();
        needs(&r).map(|(op, s)| (op, s.to_string()))
    }

    #[test]
    fn keys_and_deletion_need_admin_and_secrets_need_verify() {
        let list = |with_secrets| {
            wire::request(fb::RequestBody::AwsKeyListRequest, |fbb| {
                fb::AwsKeyListRequest::create(fbb, &fb::AwsKeyListRequestArgs { with_secrets })
                    .as_union_value()
            })
        };
        assert_eq!(
            need_of(&list(false)),
            Some((Operation::Describe, "*".into()))
        );
        assert_eq!(need_of(&list(true)), Some((Operation::Verify, "*".into())));
        let issue = wire::request(fb::RequestBody::AwsKeyIssueRequest, |fbb| {
            let principal = Some(fbb.create_string("sensor-1"));
            fb::AwsKeyIssueRequest::create(fbb, &fb::AwsKeyIssueRequestArgs { principal })
                .as_union_value()
        });
        assert_eq!(need_of(&issue), Some((Operation::Admin, "*".into())));
        let revoke = wire::request(fb::RequestBody::AwsKeyRevokeRequest, |fbb| {
            let access_key_id = Some(fbb.create_string("SKAAAAAAAAAAAAAAAAAA"));
            fb::AwsKeyRevokeRequest::create(fbb, &fb::AwsKeyRevokeRequestArgs { access_key_id })
                .as_union_value()
        });
        assert_eq!(need_of(&revoke), Some((Operation::Admin, "*".into())));
        let delete = wire::request(fb::RequestBody::DeleteStreamRequest, |fbb| {
            let name = Some(fbb.create_string("orders"));
            fb::DeleteStreamRequest::create(
                fbb,
                &fb::DeleteStreamRequestArgs {
                    name,
                    purge_archive: true,
                },
            )
            .as_union_value()
        });
        assert_eq!(need_of(&delete), Some((Operation::Admin, "orders".into())));
        // An edge's rule lets it read secrets; a describe-only rule does not.
        let mut acl = Acl::default();
        for (who, ops) in [("edge", "produce,describe,verify"), ("dash", "describe")] {
            acl.add(strata_protocol::acl::Rule {
                id: 0,
                principal: who.into(),
                operations: strata_protocol::acl::parse_operations(ops).unwrap(),
                stream: "*".into(),
                key_prefix: None,
            })
            .unwrap();
        }
        let caller = |name: &str| Caller {
            addr: "127.0.0.1:1".parse().unwrap(),
            principal: Some(std::sync::Arc::from(name)),
        };
        let secrets = Some((Operation::Verify, ALL_STREAMS));
        assert!(authorize(&acl, &[], &caller("edge"), secrets).is_ok());
        let e = authorize(&acl, &[], &caller("dash"), secrets).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(authorize(&acl, &["admin".into()], &caller("admin"), secrets).is_ok());
    }
}
