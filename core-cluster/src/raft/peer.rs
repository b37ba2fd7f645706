//! The peer protocol between core nodes: Raft RPCs of every group over one
//! QUIC endpoint per node (`peer_addr`, mutual TLS, ALPN `strata-peer/1`).
//! This module owns the wire format (pure encode/decode, unit-tested without
//! sockets) and the server loop, [`serve_peers`]; the client is
//! [`crate::raft::network`]. Who may call is [`PeerAccess`]'s decision
//! (`peer_access.rs`): current members, by the node id of their peer
//! certificate.
//!
//! # Wire format
//!
//! One RPC per bidirectional QUIC stream; each direction carries one frame:
//! a 4-byte big-endian length, then the body (`strata_schema::frame`, as on
//! the client API). Integers in bodies are little-endian.
//!
//! ```text
//! request  = kind u8 | group_len u16 | group (UTF-8) | body
//!   kind 1 AppendEntries: vote | prev_log_id | leader_commit
//!                         | count u32 | count x (len u32 | entry record)
//!        vote        = term u64 | node_id u64 | committed u8 (0/1)
//!        log id opt  = 0u8 | 1u8 term u64 node_id u64 index u64
//!        entry record: `raft::log_store::encode_entry_record` (the segment
//!                      record body: term, node_id, index, kind, payload),
//!                      so batch bytes travel as stored, never as JSON.
//!   kind 2 Vote:            serde_json of `VoteRequest`
//!   kind 3 InstallSnapshot: json_len u32 | serde_json of the request with
//!                           `data` empty | data (raw chunk bytes)
//!   kind 4 MetaWrite:       serde_json of a `MetaCommand`, proposed on the
//!                           receiver's Raft group (group "meta" only): how a
//!                           shard leader reports a finished replica move to
//!                           the metadata leader. Reply body: serde_json of
//!                           `Result<ClientWriteResponse, RaftError<..>>`.
//!   kind 5 Elect:           empty: the receiver campaigns for leadership of
//!                           the group for a moment (leader rebalancing: the
//!                           current leader has paused writes and heartbeats).
//!                           Reply body: serde_json of `Result<(), String>`.
//!   kind 6 Quiesce:         leader u64 | term u64 | last_log_index u64
//!                           | committed_index u64: the shard group's leader
//!                           asks a follower to stop its timers while the
//!                           group is idle (`raft::quiesce`). Reply body:
//!                           serde_json of `bool` (whether it did).
//!   kind 7 Ping:            empty, any group id: the node-level liveness
//!                           exchange. Reply body: serde_json of `()`.
//!   kind 8 Batch:           several requests of other kinds in one, each
//!                           answered on its own as it completes
//!                           (`raft::coalesce`, which owns this format).
//!   kind 9 ReadIndex:       empty (group "meta" only): the metadata leader
//!                           confirms it still leads and answers the index
//!                           its catalog must have applied for a read to be
//!                           current (openraft's `get_read_log_id`); a
//!                           follower waits for that before it answers
//!                           that a stream does not exist. Reply body:
//!                           serde_json of `Result<Option<u64>, RaftError>`.
//! reply    = status u8 | body
//!   status 0 OK:            serde_json of `Result<Response, RaftError>`
//!   status 1 UNKNOWN_GROUP: UTF-8 message (the group is not open on the
//!                           node yet: retry later)
//!   status 2 BAD_REQUEST:   UTF-8 message (the request did not decode)
//!   status 3 FORBIDDEN:     UTF-8 message (the caller's certificate names
//!                           no node id, or one that is not a member)
//! ```
//!
//! Group ids: `"meta"` for the metadata group, `"<stream>/<shard>"` for shard
//! groups. The group id says which kind of group a request is for, and so
//! which command type its entries decode as ([`GroupRequest`]): a metadata
//! command in an AppendEntries for a shard group, or a shard command in one
//! for the metadata group, does not decode. Bad bytes are never a panic:
//! every length is checked before use and a request that does not decode
//! gets a BAD_REQUEST reply.

use crate::catalog::MetaCommand;
use crate::raft::coalesce;
use crate::raft::log_store::{decode_entry_record, encode_entry_record, StoreError};
use crate::raft::types::{
    GroupConfig, LogId, MetaRaft, MetaTypes, NodeId, Raft, ShardRaft, ShardTypes, Vote,
};
use bytes::{Buf, BufMut, Bytes};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LeaderId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use strata_runtime::frame::{read_frame, FrameReadError};
use strata_schema::frame::{self, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use tokio::sync::{watch, Semaphore};

#[path = "peer_access.rs"]
mod access;
pub use access::{peer_allowed, PeerAccess, PeerIdentityError, PeerRefusal};

/// The metadata group's id; every other group id names a shard group.
pub const META_GROUP: &str = "meta";

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_META_WRITE: u8 = 4;
const KIND_ELECT: u8 = 5;
const KIND_QUIESCE: u8 = 6;
const KIND_PING: u8 = 7;
const KIND_READ_INDEX: u8 = 9;
/// How long an Elect request keeps the receiver campaigning.
pub const CAMPAIGN_FOR: Duration = Duration::from_millis(1500);
/// Most elections one Elect request starts.
const CAMPAIGN_ELECTIONS_MAX: u32 = 3;

pub const STATUS_OK: u8 = 0;
pub const STATUS_UNKNOWN_GROUP: u8 = 1;
pub const STATUS_BAD_REQUEST: u8 = 2;
pub const STATUS_FORBIDDEN: u8 = 3;

/// Peer connections a node accepts at once (other core nodes, so few).
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// Concurrent RPCs per peer connection: every group shares the connection,
/// and each group has at most a few RPCs in flight per peer.
pub const PEER_REQUESTS_PER_CONNECTION_MAX: usize = 4096;
/// How long [`serve_peers`] lets connections close cleanly on shutdown.
pub const PEER_CLOSE_WAIT: Duration = Duration::from_millis(500);
/// Largest reply frame (replies are small JSON documents).
pub const PEER_REPLY_BYTES_MAX: usize = 1 << 20;

/// Errors decoding a peer message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("peer message truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unknown peer RPC kind {0}")]
    UnknownKind(u8),
    #[error("unknown peer reply status {0}")]
    UnknownStatus(u8),
    #[error("group id is not UTF-8")]
    GroupNotUtf8,
    #[error("group id of {0} bytes exceeds the limit of 65535 bytes")]
    GroupTooLong(usize),
    #[error("{what}: invalid flag byte {flag}")]
    BadFlag { what: &'static str, flag: u8 },
    #[error("{what} is not valid JSON of its type: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("entry {i} of the AppendEntries request: {source}")]
    Entry {
        i: usize,
        #[source]
        source: StoreError,
    },
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
}

/// A decoded RPC for a group of type configuration `C`.
#[derive(Debug)]
pub enum PeerRequest<C: GroupConfig> {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<C>),
    MetaWrite(MetaCommand),
    Elect,
    Quiesce(QuiesceRequest),
    Ping,
    ReadIndex,
}

/// A leader's request that a follower of an idle group stop its timers:
/// granted only if the follower follows `leader` in `term`, holds the log
/// up to `last_log_index` and nothing after it, and applied up to
/// `committed_index` (so its reads are current while it sleeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuiesceRequest {
    pub leader: NodeId,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
}

/// A decoded RPC, typed by the kind of group its group id names.
#[derive(Debug)]
pub enum GroupRequest {
    Meta(PeerRequest<MetaTypes>),
    Shard(PeerRequest<ShardTypes>),
}

/// A decoded reply: `T` is `Result<Response, RaftError<..>>` of the RPC.
#[derive(Debug)]
pub enum PeerReply<T> {
    Ok(T),
    UnknownGroup(String),
    BadRequest(String),
    /// The peer refused the caller (not a member, no node id).
    Forbidden(String),
}

fn need(b: &Bytes, n: usize, what: &'static str) -> Result<(), WireError> {
    if b.remaining() < n {
        return Err(WireError::Truncated {
            what,
            need: n,
            have: b.remaining(),
        });
    }
    Ok(())
}

fn json_err(what: &'static str) -> impl FnOnce(serde_json::Error) -> WireError {
    move |source| WireError::Json { what, source }
}

/// A frame with its length prefix left to [`seal`].
fn open_frame() -> Vec<u8> {
    vec![0u8; FRAME_HEADER_BYTES]
}

/// Writes the length prefix of a frame built with [`open_frame`].
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let len = out.len() - FRAME_HEADER_BYTES;
    out[..FRAME_HEADER_BYTES].copy_from_slice(&frame::header(len));
    out
}

fn put_vote(out: &mut Vec<u8>, v: &Vote) {
    out.put_u64_le(v.leader_id.term);
    out.put_u64_le(v.leader_id.node_id);
    out.put_u8(u8::from(v.committed));
}

fn get_vote(b: &mut Bytes) -> Result<Vote, WireError> {
    need(b, 17, "vote")?;
    let term = b.get_u64_le();
    let node_id = b.get_u64_le();
    let committed = match b.get_u8() {
        0 => false,
        1 => true,
        flag => return Err(WireError::BadFlag { what: "vote", flag }),
    };
    Ok(Vote {
        leader_id: LeaderId::new(term, node_id),
        committed,
    })
}

fn put_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    match id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            out.put_u64_le(id.leader_id.term);
            out.put_u64_le(id.leader_id.node_id);
            out.put_u64_le(id.index);
        }
    }
}

fn get_log_id(b: &mut Bytes, what: &'static str) -> Result<Option<LogId>, WireError> {
    need(b, 1, what)?;
    match b.get_u8() {
        0 => Ok(None),
        1 => {
            need(b, 24, what)?;
            let term = b.get_u64_le();
            let node_id = b.get_u64_le();
            let index = b.get_u64_le();
            Ok(Some(LogId::new(
                CommittedLeaderId::new(term, node_id),
                index,
            )))
        }
        flag => Err(WireError::BadFlag { what, flag }),
    }
}

/// Encodes a request as a whole frame (length prefix included).
pub fn encode_request<C: GroupConfig>(
    group: &str,
    req: &PeerRequest<C>,
) -> Result<Vec<u8>, WireError> {
    let group_len = u16::try_from(group.len()).map_err(|_| WireError::GroupTooLong(group.len()))?;
    let mut out = open_frame();
    let kind = match req {
        PeerRequest::Append(_) => KIND_APPEND,
        PeerRequest::Vote(_) => KIND_VOTE,
        PeerRequest::Snapshot(_) => KIND_SNAPSHOT,
        PeerRequest::MetaWrite(_) => KIND_META_WRITE,
        PeerRequest::Elect => KIND_ELECT,
        PeerRequest::Quiesce(_) => KIND_QUIESCE,
        PeerRequest::Ping => KIND_PING,
        PeerRequest::ReadIndex => KIND_READ_INDEX,
    };
    out.put_u8(kind);
    out.put_u16_le(group_len);
    out.extend_from_slice(group.as_bytes());
    match req {
        PeerRequest::Append(r) => encode_append(&mut out, r)?,
        PeerRequest::Vote(r) => {
            serde_json::to_writer(&mut out, r).map_err(json_err("VoteRequest"))?;
        }
        PeerRequest::Snapshot(r) => encode_snapshot(&mut out, r)?,
        PeerRequest::MetaWrite(c) => {
            serde_json::to_writer(&mut out, c).map_err(json_err("MetaCommand"))?;
        }
        PeerRequest::Elect | PeerRequest::Ping | PeerRequest::ReadIndex => {}
        PeerRequest::Quiesce(q) => {
            out.put_u64_le(q.leader);
            out.put_u64_le(q.term);
            out.put_u64_le(q.last_log_index);
            out.put_u64_le(q.committed_index);
        }
    }
    Ok(seal(out))
}

fn encode_append<C: GroupConfig>(
    out: &mut Vec<u8>,
    r: &AppendEntriesRequest<C>,
) -> Result<(), WireError> {
    put_vote(out, &r.vote);
    put_log_id(out, r.prev_log_id.as_ref());
    put_log_id(out, r.leader_commit.as_ref());
    let count = u32::try_from(r.entries.len()).expect("openraft bounds entries per RPC");
    out.put_u32_le(count);
    for (i, entry) in r.entries.iter().enumerate() {
        let len_at = out.len();
        out.put_u32_le(0);
        encode_entry_record(entry, out).map_err(|source| WireError::Entry { i, source })?;
        let len = u32::try_from(out.len() - len_at - 4).expect("an entry fits a frame");
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    Ok(())
}

fn encode_snapshot<C: GroupConfig>(
    out: &mut Vec<u8>,
    r: &InstallSnapshotRequest<C>,
) -> Result<(), WireError> {
    let head = InstallSnapshotRequest::<C> {
        vote: r.vote,
        meta: r.meta.clone(),
        offset: r.offset,
        data: Vec::new(),
        done: r.done,
    };
    let json = serde_json::to_vec(&head).map_err(json_err("InstallSnapshotRequest"))?;
    out.put_u32_le(u32::try_from(json.len()).expect("snapshot metadata is small"));
    out.extend_from_slice(&json);
    out.extend_from_slice(&r.data);
    Ok(())
}

/// Decodes a request frame body (without its length prefix), as a request
/// for the kind of group its group id names. Batch bytes of the entries are
/// slices of `body`, not copies.
pub fn decode_request(mut body: Bytes) -> Result<(String, GroupRequest), WireError> {
    need(&body, 3, "request header")?;
    let kind = body.get_u8();
    let group_len = usize::from(body.get_u16_le());
    need(&body, group_len, "group id")?;
    let group = String::from_utf8(body.split_to(group_len).to_vec())
        .map_err(|_| WireError::GroupNotUtf8)?;
    let req = if group == META_GROUP {
        GroupRequest::Meta(decode_body(kind, body)?)
    } else {
        GroupRequest::Shard(decode_body(kind, body)?)
    };
    Ok((group, req))
}

/// Decodes the body of a request of kind `kind` for a group of type `C`.
fn decode_body<C: GroupConfig>(kind: u8, body: Bytes) -> Result<PeerRequest<C>, WireError> {
    let req = match kind {
        KIND_APPEND => PeerRequest::Append(decode_append(body)?),
        KIND_VOTE => {
            PeerRequest::Vote(serde_json::from_slice(&body).map_err(json_err("VoteRequest"))?)
        }
        KIND_SNAPSHOT => PeerRequest::Snapshot(decode_snapshot(body)?),
        KIND_META_WRITE => {
            PeerRequest::MetaWrite(serde_json::from_slice(&body).map_err(json_err("MetaCommand"))?)
        }
        KIND_ELECT if body.is_empty() => PeerRequest::Elect,
        KIND_ELECT => return Err(WireError::Trailing(body.len())),
        KIND_QUIESCE => PeerRequest::Quiesce(decode_quiesce(body)?),
        KIND_PING if body.is_empty() => PeerRequest::Ping,
        KIND_PING => return Err(WireError::Trailing(body.len())),
        KIND_READ_INDEX if body.is_empty() => PeerRequest::ReadIndex,
        KIND_READ_INDEX => return Err(WireError::Trailing(body.len())),
        k => return Err(WireError::UnknownKind(k)),
    };
    Ok(req)
}

fn decode_quiesce(mut b: Bytes) -> Result<QuiesceRequest, WireError> {
    need(&b, 32, "quiesce request")?;
    let q = QuiesceRequest {
        leader: b.get_u64_le(),
        term: b.get_u64_le(),
        last_log_index: b.get_u64_le(),
        committed_index: b.get_u64_le(),
    };
    if b.has_remaining() {
        return Err(WireError::Trailing(b.remaining()));
    }
    Ok(q)
}

fn decode_append<C: GroupConfig>(mut b: Bytes) -> Result<AppendEntriesRequest<C>, WireError> {
    let vote = get_vote(&mut b)?;
    let prev_log_id = get_log_id(&mut b, "prev_log_id")?;
    let leader_commit = get_log_id(&mut b, "leader_commit")?;
    need(&b, 4, "entry count")?;
    let count = b.get_u32_le() as usize;
    // Each entry takes at least its length prefix: bound before allocating.
    let mut entries = Vec::with_capacity(count.min(b.remaining() / 4));
    for i in 0..count {
        need(&b, 4, "entry length")?;
        let len = b.get_u32_le() as usize;
        need(&b, len, "entry")?;
        let rec = b.split_to(len);
        entries.push(decode_entry_record(rec).map_err(|source| WireError::Entry { i, source })?);
    }
    if b.has_remaining() {
        return Err(WireError::Trailing(b.remaining()));
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries,
    })
}

fn decode_snapshot<C: GroupConfig>(mut b: Bytes) -> Result<InstallSnapshotRequest<C>, WireError> {
    need(&b, 4, "snapshot header length")?;
    let json_len = b.get_u32_le() as usize;
    need(&b, json_len, "snapshot header")?;
    let json = b.split_to(json_len);
    let mut req: InstallSnapshotRequest<C> =
        serde_json::from_slice(&json).map_err(json_err("InstallSnapshotRequest"))?;
    req.data = b.to_vec();
    Ok(req)
}

/// Encodes a successful RPC result (`Result<Response, RaftError>`) as a
/// whole reply frame.
pub fn encode_reply<T: Serialize>(result: &T) -> Vec<u8> {
    let mut out = open_frame();
    out.put_u8(STATUS_OK);
    if let Err(e) = serde_json::to_writer(&mut out, result) {
        return encode_reply_error(STATUS_BAD_REQUEST, &format!("encoding the reply: {e}"));
    }
    seal(out)
}

/// Encodes an error reply (`STATUS_UNKNOWN_GROUP`, `STATUS_BAD_REQUEST` or
/// `STATUS_FORBIDDEN`).
pub fn encode_reply_error(status: u8, message: &str) -> Vec<u8> {
    assert_ne!(status, STATUS_OK, "an error reply needs an error status");
    let mut out = open_frame();
    out.put_u8(status);
    out.extend_from_slice(message.as_bytes());
    seal(out)
}

/// Decodes a reply frame body (without its length prefix).
pub fn decode_reply<T: DeserializeOwned>(body: &[u8]) -> Result<PeerReply<T>, WireError> {
    let Some((&status, rest)) = body.split_first() else {
        return Err(WireError::Truncated {
            what: "reply status",
            need: 1,
            have: 0,
        });
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match status {
        STATUS_OK => Ok(PeerReply::Ok(
            serde_json::from_slice(rest).map_err(json_err("reply"))?,
        )),
        STATUS_UNKNOWN_GROUP => Ok(PeerReply::UnknownGroup(text())),
        STATUS_BAD_REQUEST => Ok(PeerReply::BadRequest(text())),
        STATUS_FORBIDDEN => Ok(PeerReply::Forbidden(text())),
        s => Err(WireError::UnknownStatus(s)),
    }
}

/// The Raft groups open on this node.
pub trait GroupRegistry: Send + Sync + 'static {
    /// The metadata group, once open.
    fn meta_raft(&self) -> Option<MetaRaft>;
    /// The shard group `group` (`"<stream>/<shard>"`), if open here.
    fn shard_raft(&self, group: &str) -> Option<ShardRaft>;
    /// The node ids of this node's metadata catalog (a node being added
    /// included): who may use the peer port besides the configured peers.
    fn members(&self) -> BTreeSet<NodeId>;
    /// A Raft message that wakes a quiesced shard group arrived for
    /// `group`: an append with entries, a vote, a snapshot or an elect (an
    /// empty append, a heartbeat, does not: `raft::quiesce`).
    fn shard_message(&self, _group: &str) {}
    /// A request from node `node` arrived: it is alive.
    fn heard_from(&self, _node: NodeId) {}
    /// The leader of shard group `group` asks it to quiesce; whether it did.
    fn quiesce_shard(&self, _group: &str, _req: &QuiesceRequest) -> bool {
        false
    }
}

/// Decodes one request, runs it on its group and returns the reply frame.
pub async fn handle_request(registry: &dyn GroupRegistry, body: Bytes) -> Vec<u8> {
    let (group, req) = match decode_request(body) {
        Ok(r) => r,
        Err(e) => return encode_reply_error(STATUS_BAD_REQUEST, &e.to_string()),
    };
    let unknown = || {
        encode_reply_error(
            STATUS_UNKNOWN_GROUP,
            &format!("Raft group {group:?} is not open on this node"),
        )
    };
    match req {
        GroupRequest::Meta(PeerRequest::Ping) | GroupRequest::Shard(PeerRequest::Ping) => {
            encode_reply(&Ok::<(), String>(()))
        }
        GroupRequest::Meta(req) => {
            let Some(raft) = registry.meta_raft() else {
                return unknown();
            };
            match req {
                PeerRequest::MetaWrite(c) => encode_reply(&raft.client_write(c).await),
                PeerRequest::ReadIndex => encode_reply(
                    &raft
                        .get_read_log_id()
                        .await
                        .map(|(read, _applied)| read.map(|l| l.index)),
                ),
                req => handle_rpc(raft, &group, req).await,
            }
        }
        GroupRequest::Shard(PeerRequest::Quiesce(q)) => match registry.shard_raft(&group) {
            Some(_) => encode_reply(&registry.quiesce_shard(&group, &q)),
            None => unknown(),
        },
        GroupRequest::Shard(req) => match registry.shard_raft(&group) {
            Some(raft) => {
                if !matches!(&req, PeerRequest::Append(a) if a.entries.is_empty()) {
                    registry.shard_message(&group);
                }
                handle_rpc(raft, &group, req).await
            }
            None => unknown(),
        },
    }
}

/// Runs a Raft RPC (or an Elect) on `raft`, the group `group`. A MetaWrite
/// reaches here only for a shard group.
async fn handle_rpc<C: GroupConfig>(raft: Raft<C>, group: &str, req: PeerRequest<C>) -> Vec<u8> {
    match req {
        PeerRequest::Append(r) => encode_reply(&raft.append_entries(r).await),
        PeerRequest::Vote(r) => encode_reply(&raft.vote(r).await),
        PeerRequest::Snapshot(r) => encode_reply(&raft.install_snapshot(r).await),
        PeerRequest::MetaWrite(_) | PeerRequest::ReadIndex => encode_reply_error(
            STATUS_BAD_REQUEST,
            &format!("MetaWrite and ReadIndex are only for group {META_GROUP:?}, not {group:?}"),
        ),
        PeerRequest::Elect => {
            tokio::spawn(campaign(raft));
            encode_reply(&Ok::<(), String>(()))
        }
        PeerRequest::Quiesce(_) => encode_reply(&false),
        PeerRequest::Ping => encode_reply(&Ok::<(), String>(())),
    }
}

/// Campaigns until this node leads, another leader appears, or
/// [`CAMPAIGN_FOR`] passes. The followers reject votes until the old
/// leader's lease runs out (openraft's leader lease), so the first election
/// may fail; a new one starts only once this node is no longer a candidate.
/// Every election raises the term, and a node whose log turns out to be
/// behind would unseat each following leader until their terms pass its
/// own: so elections are started sparingly, never on a timer of our own.
async fn campaign<C: GroupConfig>(raft: Raft<C>) {
    use openraft::ServerState;
    let me = raft.metrics().borrow().id;
    let until = tokio::time::Instant::now() + CAMPAIGN_FOR;
    let mut elections = 0;
    while tokio::time::Instant::now() < until && elections < CAMPAIGN_ELECTIONS_MAX {
        let m = raft.metrics().borrow().clone();
        if m.current_leader == Some(me) {
            return;
        }
        if m.state == ServerState::Follower {
            if m.current_leader.is_some() && elections > 0 {
                return; // another node won
            }
            if raft.trigger().elect().await.is_err() {
                return;
            }
            elections += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves Raft RPCs from other core nodes on `endpoint` (configured with
/// `strata_runtime::tls::peer_server_config`) until `shutdown` turns true;
/// then closes the endpoint, which also ends outgoing peer connections if
/// the same endpoint backs the node's `PeerPool`. Each request is checked
/// against `access` first, with the registry's current members.
pub async fn serve_peers(
    endpoint: quinn::Endpoint,
    registry: Arc<dyn GroupRegistry>,
    access: PeerAccess,
    mut shutdown: watch::Receiver<bool>,
) {
    let access = Arc::new(access);
    let conns = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::warn!(peer = %incoming.remote_address(), "peer connection refused: {PEER_CONNECTIONS_MAX} open");
            incoming.refuse();
            continue;
        };
        let registry = registry.clone();
        let access = access.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = incoming.remote_address();
            match incoming.await {
                Ok(conn) => serve_peer_connection(conn, registry, access, shutdown).await,
                // A client without a certificate of the cluster CA ends here.
                Err(e) => tracing::warn!(%peer, error = %e, "peer handshake failed"),
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    // The close frames go out at once; waiting longer only delays shutdown
    // behind handshakes to peers that are down.
    let _ = tokio::time::timeout(PEER_CLOSE_WAIT, endpoint.wait_idle()).await;
}

/// The caller of one peer connection, checked before each request.
struct Caller {
    node_id: Option<NodeId>,
    access: Arc<PeerAccess>,
    /// Whether a refusal was logged (once per connection).
    warned: std::sync::atomic::AtomicBool,
}

impl Caller {
    /// `Some(reply)` refusing the request, or `None` to serve it.
    fn refuse(&self, registry: &dyn GroupRegistry, peer: std::net::SocketAddr) -> Option<Vec<u8>> {
        let members = if self.access.enforced() {
            registry.members()
        } else {
            BTreeSet::new()
        };
        let refusal = self.access.check(self.node_id, &members).err()?;
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(%peer, node_id = ?self.node_id, %refusal, "peer requests refused");
        }
        Some(encode_reply_error(STATUS_FORBIDDEN, &refusal.to_string()))
    }
}

async fn serve_peer_connection(
    conn: quinn::Connection,
    registry: Arc<dyn GroupRegistry>,
    access: Arc<PeerAccess>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = conn.remote_address();
    let caller = Arc::new(Caller {
        node_id: strata_runtime::identity::connection_node_id(&conn),
        access,
        warned: false.into(),
    });
    let inflight = Arc::new(Semaphore::new(PEER_REQUESTS_PER_CONNECTION_MAX));
    loop {
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (mut send, mut recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "peer connection closed");
                    return;
                }
            },
            _ = shutdown.wait_for(|s| *s) => {
                conn.close(0u32.into(), b"shutting down");
                return;
            }
        };
        let registry = registry.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match read_frame(&mut recv, FRAME_BYTES_MAX).await {
                Ok(body) => match caller.refuse(registry.as_ref(), peer) {
                    Some(refused) => refused,
                    None => {
                        if let Some(id) = caller.node_id {
                            registry.heard_from(id);
                        }
                        if coalesce::is_batch(&body) {
                            serve_batch(registry.as_ref(), body, &mut send).await;
                            return;
                        }
                        handle_request(registry.as_ref(), body).await
                    }
                },
                Err(FrameReadError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "peer request stream failed");
                    return;
                }
                Err(e) => encode_reply_error(STATUS_BAD_REQUEST, &e.to_string()),
            };
            if send.write_all(&reply).await.is_ok() {
                let _ = send.finish();
                // Let the peer read the reply before the stream is dropped.
                let _ = send.stopped().await;
            }
        });
    }
}

/// Answers each request of a batch (`raft::coalesce`) on `send` as it
/// completes, so one slow request does not hold back the others.
async fn serve_batch(registry: &dyn GroupRegistry, body: Bytes, send: &mut quinn::SendStream) {
    use futures::stream::{FuturesUnordered, StreamExt};
    let parts = match coalesce::decode_batch(body) {
        Ok(parts) => parts,
        Err(e) => {
            let reply = encode_reply_error(STATUS_BAD_REQUEST, &e.to_string());
            if send.write_all(&reply).await.is_ok() {
                let _ = send.finish();
                let _ = send.stopped().await;
            }
            return;
        }
    };
    let mut replies: FuturesUnordered<_> = (0u16..)
        .zip(parts)
        .map(|(i, part)| async move { (i, handle_request(registry, part).await) })
        .collect();
    while let Some((i, reply)) = replies.next().await {
        if send
            .write_all(&coalesce::encode_part_reply(i, &reply))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
