//! Identities and access rules, as a client sees them: who the server
//! thinks the caller is (`whoami`), the rules of the cluster (`acl`), and
//! the AWS access keys of principals (`aws_key_*`, for the edge's Kinesis
//! API).

use crate::api::{bad, open};
use crate::{Client, ClientError};
use strata_protocol::acl::{rule_from_fb, rule_to_fb, Acl, Rule};
use strata_protocol::aws_key::{key_list_from_fb, AwsKey, AwsKeys};
use strata_schema::fb;
use strata_schema::wire;

/// The principal a server sees for this client, and whether it is a
/// superuser there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    pub principal: String,
    pub superuser: bool,
}

pub async fn whoami(c: &Client) -> Result<WhoAmI, ClientError> {
    let req = wire::request(fb::RequestBody::WhoAmIRequest, |fbb| {
        fb::WhoAmIRequest::create(fbb, &fb::WhoAmIRequestArgs {}).as_union_value()
    });
    let reply = c.call(&req).await?;
    open(&reply)
        .body_as_who_am_i()
        .map(|w| WhoAmI {
            principal: w.principal().to_string(),
            superuser: w.superuser(),
        })
        .ok_or_else(|| bad(c, "WhoAmI"))
}

fn acl_of(c: &Client, reply: &bytes::Bytes) -> Result<(Acl, u64), ClientError> {
    let l = open(reply)
        .body_as_acl_list()
        .ok_or_else(|| bad(c, "AclList"))?;
    let rules = l
        .rules()
        .map(|rs| rs.iter().map(|r| rule_from_fb(&r)).collect())
        .unwrap_or_default();
    Ok((
        Acl {
            rules,
            version: l.version(),
        },
        l.added_id(),
    ))
}

/// The access rules in force (needs `describe` on every stream).
pub async fn acl_list(c: &Client) -> Result<Acl, ClientError> {
    let req = wire::request(fb::RequestBody::AclListRequest, |fbb| {
        fb::AclListRequest::create(fbb, &fb::AclListRequestArgs {}).as_union_value()
    });
    Ok(acl_of(c, &c.call(&req).await?)?.0)
}

/// Adds `add` and/or removes rule `remove` (0: none) on the metadata
/// leader (needs `admin`). Returns the rules in force and the new rule's id.
pub async fn acl_change(
    c: &Client,
    add: Option<&Rule>,
    remove: u64,
) -> Result<(Acl, u64), ClientError> {
    let req = wire::request(fb::RequestBody::AclChangeRequest, |fbb| {
        let add = add.map(|r| rule_to_fb(fbb, r));
        fb::AclChangeRequest::create(
            fbb,
            &fb::AclChangeRequestArgs {
                add,
                remove_id: remove,
            },
        )
        .as_union_value()
    });
    acl_of(c, &c.call(&req).await?)
}

/// Adds `rule` unless a rule with the same principal, operations, stream
/// and key prefix is in force (idempotent set-up, e.g. `strata dev`
/// granting its edge agent). Returns the rule's id.
pub async fn ensure_rule(
    cluster: &crate::cluster::Cluster,
    rule: &Rule,
) -> Result<u64, ClientError> {
    let same = |r: &Rule| {
        r.principal == rule.principal
            && r.operations == rule.operations
            && r.stream == rule.stream
            && r.key_prefix == rule.key_prefix
    };
    let acl = cluster.any(|c| async move { acl_list(&c).await }).await?;
    if let Some(r) = acl.rules.iter().find(|r| same(r)) {
        return Ok(r.id);
    }
    let (_, id) = cluster
        .any(|c| async move { acl_change(&c, Some(rule), 0).await })
        .await?;
    Ok(id)
}

/// The rule an edge agent needs: forward to every stream, describe streams,
/// read the rules it enforces and the AWS keys it verifies signatures with.
pub fn edge_agent_rule(principal: &str) -> Rule {
    Rule {
        id: 0,
        principal: principal.to_string(),
        operations: vec![
            strata_protocol::acl::Operation::Produce,
            strata_protocol::acl::Operation::Describe,
            strata_protocol::acl::Operation::Verify,
        ],
        stream: "*".to_string(),
        key_prefix: None,
    }
}

/// The rule an edge agent that serves the Kinesis API needs. The agent
/// checks each Kinesis request against the rules of the signing key's
/// principal itself (with its copy of the rules) and then performs it at
/// the core as its own principal, so it needs every right its Kinesis
/// callers may be given: all operations on every stream.
pub fn kinesis_edge_rule(principal: &str) -> Rule {
    Rule {
        id: 0,
        principal: principal.to_string(),
        operations: strata_protocol::acl::Operation::ALL.to_vec(),
        stream: "*".to_string(),
        key_prefix: None,
    }
}

fn keys_of(c: &Client, reply: &bytes::Bytes) -> Result<AwsKeys, ClientError> {
    open(reply)
        .body_as_aws_key_list()
        .map(|l| key_list_from_fb(&l))
        .ok_or_else(|| bad(c, "AwsKeyList"))
}

/// Creates an AWS access key for `principal` on the metadata leader (needs
/// `admin`). The returned key carries its secret: the core shows it once.
pub async fn aws_key_issue(c: &Client, principal: &str) -> Result<AwsKey, ClientError> {
    let req = wire::request(fb::RequestBody::AwsKeyIssueRequest, |fbb| {
        let principal = Some(fbb.create_string(principal));
        fb::AwsKeyIssueRequest::create(fbb, &fb::AwsKeyIssueRequestArgs { principal })
            .as_union_value()
    });
    keys_of(c, &c.call(&req).await?)?
        .keys
        .pop()
        .ok_or_else(|| bad(c, "AwsKeyList with the new key"))
}

/// Every AWS access key: ids and principals (needs `describe` on `*`);
/// with `with_secrets` their secrets too (needs `verify` on `*`).
pub async fn aws_key_list(c: &Client, with_secrets: bool) -> Result<AwsKeys, ClientError> {
    let req = wire::request(fb::RequestBody::AwsKeyListRequest, |fbb| {
        fb::AwsKeyListRequest::create(fbb, &fb::AwsKeyListRequestArgs { with_secrets })
            .as_union_value()
    });
    keys_of(c, &c.call(&req).await?)
}

/// The keys an edge agent verifies Kinesis API signatures with (secrets
/// included; needs `verify` on `*`).
pub async fn aws_keys_for_edge(c: &Client) -> Result<AwsKeys, ClientError> {
    aws_key_list(c, true).await
}

/// Deletes an AWS access key on the metadata leader (needs `admin`).
/// Returns the keys left, without secrets.
pub async fn aws_key_revoke(c: &Client, access_key_id: &str) -> Result<AwsKeys, ClientError> {
    let req = wire::request(fb::RequestBody::AwsKeyRevokeRequest, |fbb| {
        let access_key_id = Some(fbb.create_string(access_key_id));
        fb::AwsKeyRevokeRequest::create(fbb, &fb::AwsKeyRevokeRequestArgs { access_key_id })
            .as_union_value()
    });
    keys_of(c, &c.call(&req).await?)
}
