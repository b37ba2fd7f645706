//! Administrative requests kept out of the main dispatch: AWS access keys
//! of principals (issue, list, revoke; the edge's Kinesis API verifies
//! signatures with them) and deleting a stream.
//!
//! The core draws a key (id and secret) on the metadata leader before it
//! proposes it, so every replica applies the same key; the secret leaves
//! the core only in the issue reply and in listings for callers allowed to
//! read secrets (`verify` on `*`, see [`super::access::needs`]).
//!
//! Deleting a stream removes it from the catalog; every node that held a
//! copy of one of its shards closes those groups and removes their data
//! (`control::purge_deleted`). With `purge_archive` the objects under the
//! stream's archive prefix and its manifest copies are deleted too.

use crate::catalog::{MetaCommand, MetaResponse};
use crate::node::Node;
use crate::raft::command::MetaReply;
use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use strata_protocol::aws_key::{build_key_list, AwsKey, AwsKeys};
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::{self, RemoteError};

/// Answers the requests of this module; `None` for any other type.
pub async fn dispatch(node: &Node, req: &fb::Request<'_>) -> Option<Result<Bytes, RemoteError>> {
    let mismatch = || {
        RemoteError::new(
            ErrorCode::MalformedRequest,
            "the request body does not match its type",
        )
    };
    Some(match req.body_type() {
        fb::RequestBody::AwsKeyIssueRequest => match req.body_as_aws_key_issue_request() {
            Some(r) => node.issue_aws_key(r.principal()).await,
            None => Err(mismatch()),
        },
        fb::RequestBody::AwsKeyRevokeRequest => match req.body_as_aws_key_revoke_request() {
            Some(r) => node.revoke_aws_key(r.access_key_id()).await,
            None => Err(mismatch()),
        },
        fb::RequestBody::AwsKeyListRequest => match req.body_as_aws_key_list_request() {
            Some(r) => Ok(node.meta().sm.read(|c| {
                if r.with_secrets() {
                    key_list_reply(&c.aws_keys)
                } else {
                    key_list_reply(&c.aws_keys.redacted())
                }
            })),
            None => Err(mismatch()),
        },
        fb::RequestBody::DeleteStreamRequest => match req.body_as_delete_stream_request() {
            Some(r) => node.delete_stream(r.name(), r.purge_archive()).await,
            None => Err(mismatch()),
        },
        fb::RequestBody::SetRetentionRequest => match req.body_as_set_retention_request() {
            Some(r) => {
                let retention = strata_protocol::Retention::from_wire(
                    r.local_retention_ms(),
                    r.local_retention_bytes(),
                    r.retention_ms(),
                    r.retention_bytes(),
                );
                node.set_retention(r.name(), retention).await
            }
            None => Err(mismatch()),
        },
        _ => return None,
    })
}

fn key_list_reply(keys: &AwsKeys) -> Bytes {
    wire::response(fb::ResponseBody::AwsKeyList, |fbb| {
        build_key_list(fbb, keys)
    })
}

fn refused(reply: MetaReply, code: ErrorCode) -> RemoteError {
    match reply {
        MetaReply::Meta(MetaResponse::Refused(m)) => RemoteError::new(code, m),
        other => RemoteError::new(ErrorCode::Internal, format!("unexpected {other:?}")),
    }
}

impl Node {
    /// `strata identity issue NAME --aws-key`: a new key for `principal`,
    /// its secret included (the only time it is shown).
    pub async fn issue_aws_key(&self, principal: &str) -> Result<Bytes, RemoteError> {
        if principal.is_empty() || principal.len() > 256 {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "an AWS key needs a principal name of 1 to 256 characters",
            ));
        }
        self.require_meta_leader()?;
        let key = AwsKey::generate(principal, &mut rand::rng());
        match self
            .commit_meta(MetaCommand::IssueAwsKey(key.clone()))
            .await?
        {
            MetaReply::Meta(MetaResponse::Done) => {
                let version = self.meta().sm.read(|c| c.aws_keys.version);
                Ok(key_list_reply(&AwsKeys {
                    keys: vec![key],
                    version,
                }))
            }
            other => Err(refused(other, ErrorCode::Internal)),
        }
    }

    /// `strata identity revoke-aws-key ID`: the keys left, without secrets.
    pub async fn revoke_aws_key(&self, access_key_id: &str) -> Result<Bytes, RemoteError> {
        strata_protocol::aws_key::check_access_key_id(access_key_id)
            .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        self.require_meta_leader()?;
        match self
            .commit_meta(MetaCommand::RevokeAwsKey(access_key_id.to_string()))
            .await?
        {
            MetaReply::Meta(MetaResponse::Done) => Ok(self
                .meta()
                .sm
                .read(|c| key_list_reply(&c.aws_keys.redacted()))),
            other => Err(refused(other, ErrorCode::InvalidArgument)),
        }
    }

    /// `strata stream retention NAME ...`: replaces the stream's retention;
    /// answered with the stream's description.
    pub async fn set_retention(
        &self,
        name: &str,
        retention: strata_protocol::Retention,
    ) -> Result<Bytes, RemoteError> {
        self.check_retention(&retention)?;
        self.require_meta_leader()?;
        let cmd = MetaCommand::SetRetention {
            stream: name.to_string(),
            retention,
        };
        match self.commit_meta(cmd).await? {
            MetaReply::Meta(MetaResponse::Done) => {}
            other => return Err(refused(other, ErrorCode::UnknownStream)),
        }
        let info = self.describe(name)?;
        Ok(wire::response(fb::ResponseBody::StreamDescription, |fbb| {
            strata_protocol::build_stream_description(fbb, &info).as_union_value()
        }))
    }

    /// `strata stream delete NAME [--purge-archive]`. A name that is no
    /// longer in the catalog but still has an archive can be purged again
    /// (a deletion that kept the archive, then changed its mind).
    pub async fn delete_stream(
        &self,
        name: &str,
        purge_archive: bool,
    ) -> Result<Bytes, RemoteError> {
        self.require_meta_leader()?;
        let exists = self.meta().sm.read(|c| c.streams.contains_key(name));
        if exists {
            match self
                .commit_meta(MetaCommand::DeleteStream(name.to_string()))
                .await?
            {
                MetaReply::Meta(MetaResponse::Done) => {}
                other => return Err(refused(other, ErrorCode::UnknownStream)),
            }
            tracing::info!(stream = name, "stream deleted from the catalog");
        }
        let tier = &self.tier;
        let mut deleted = 0;
        if purge_archive && tier.enabled {
            deleted = purge_archive_of(tier, name).await?;
            tracing::info!(stream = name, objects = deleted, "stream archive purged");
        }
        if !exists && deleted == 0 {
            return Err(RemoteError::new(
                ErrorCode::UnknownStream,
                format!("stream {name:?} does not exist"),
            ));
        }
        let archive_url = if tier.enabled {
            format!(
                "{}/{}",
                tier.url.trim_end_matches('/'),
                strata_archive::keys::stream_prefix(&object_store::path::Path::default(), name)
            )
        } else {
            String::new()
        };
        Ok(wire::response(fb::ResponseBody::StreamDeleted, |fbb| {
            let name = Some(fbb.create_string(name));
            let archive_url = Some(fbb.create_string(&archive_url));
            fb::StreamDeleted::create(
                fbb,
                &fb::StreamDeletedArgs {
                    name,
                    archive_url,
                    archive_objects_deleted: deleted,
                },
            )
            .as_union_value()
        }))
    }
}

impl Node {
    /// A new stream must not write over the archive a deleted stream of the
    /// same name left (same object keys, same manifest keys).
    pub(crate) async fn refuse_over_kept_archive(&self, name: &str) -> Result<(), RemoteError> {
        let exists = self.meta().sm.read(|c| c.streams.contains_key(name));
        if exists || !self.tier.enabled {
            return Ok(());
        }
        let archived = crate::tiering::archived_shards(&self.tier, name)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Unavailable, format!("{e:#}")))?;
        if archived == 0 {
            return Ok(());
        }
        Err(RemoteError::new(
            ErrorCode::StreamExists,
            format!(
                "{} holds the archive of a deleted stream {name:?} ({archived} shard manifest(s)); a new stream of that name would write over it: bring it back with `strata stream restore {name}`, or remove it with `strata stream delete {name} --purge-archive`",
                self.tier.url
            ),
        ))
    }
}

/// Deletes every object under the stream's prefix and its manifest copies.
async fn purge_archive_of(tier: &crate::tiering::Tier, stream: &str) -> Result<u64, RemoteError> {
    use strata_archive::keys;
    let failed = |what: String, e: object_store::Error| {
        RemoteError::new(
            ErrorCode::Unavailable,
            format!("purging the archive of {stream:?}: {what}: {e}; the stream is deleted, run the command again to finish the purge"),
        )
    };
    let mut deleted = 0;
    for prefix in [
        keys::stream_prefix(&tier.prefix, stream),
        keys::manifest_dir(&tier.prefix, stream),
    ] {
        let mut listing = tier.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| failed(format!("listing {prefix}"), e))?;
            match tier.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(failed(format!("deleting {}", meta.location), e)),
            }
        }
    }
    Ok(deleted)
}
