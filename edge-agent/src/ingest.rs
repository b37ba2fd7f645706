//! The QUIC ingest handler: producers' `ProduceRequest`s.
//!
//! A batch is verified against the configured limits, appended to its
//! stream's buffer and acknowledged only after the buffer's group commit made
//! it durable. A stream this agent has not seen is described by the core
//! first (then cached by the registry); while the core is down, only known
//! streams are accepted. A producer must be allowed `produce` on the stream
//! by the agent's copy of the access rules (`registry::rules`); with a key
//! prefix rule, every record key of the batch is checked before anything is
//! buffered.

use crate::buffer::BufferError;
use crate::registry::rules::Rules;
use crate::registry::{Registry, StreamState};
use bytes::Bytes;
use std::sync::Arc;
use strata_client::ClientError;
use strata_protocol::acl::Grant;
use strata_runtime::server::{Caller, Handler};
use strata_schema::batch::{self, Limits};
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::{self, RemoteError};

/// QUIC handler of the ingest endpoint.
pub struct EdgeHandler {
    registry: Arc<Registry>,
    rules: Arc<Rules>,
    limits: Limits,
}

impl EdgeHandler {
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    pub fn new(registry: Arc<Registry>, rules: Arc<Rules>) -> Self {
        let limits = registry.cfg().limits();
        Self {
            registry,
            rules,
            limits,
        }
    }

    /// The stream's state, asking the core about streams not seen before.
    pub async fn stream(&self, name: &str) -> Result<Arc<StreamState>, RemoteError> {
        if let Some(s) = self.registry.get(name) {
            return Ok(s);
        }
        strata_schema::validate_stream_name(name)
            .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let info = match self.registry.core().describe(name).await {
            Ok(info) => info,
            Err(ClientError::Remote(e)) => return Err(e),
            Err(e) => {
                return Err(RemoteError::new(
                    ErrorCode::Unavailable,
                    format!("stream {name:?} is not known to this agent yet and the core cannot be asked: {e}"),
                ))
            }
        };
        self.registry
            .open_stream(info)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))
    }

    /// `frame` is the request frame `r` was read from: the batch is sliced out of it, not copied.
    async fn produce(
        &self,
        frame: &Bytes,
        r: fb::ProduceRequest<'_>,
        caller: &Caller,
    ) -> Result<Bytes, RemoteError> {
        let bytes = r.batch().bytes();
        let (records, _) = self
            .append_batch(r.stream(), frame.slice_ref(bytes), caller)
            .await?;
        Ok(wire::response(fb::ResponseBody::ProduceResponse, |fbb| {
            fb::ProduceResponse::create(fbb, &fb::ProduceResponseArgs { records }).as_union_value()
        }))
    }

    /// The produce path every front end shares (QUIC here, the Kinesis API
    /// in `kinesis`): the caller's `produce` right and key prefixes, the
    /// batch limits, the stream (asked of the core the first time), the
    /// buffer's group commit. Resolves once the batch is durable, with its
    /// record count and the buffer position of its first record.
    pub async fn append_batch(
        &self,
        stream_name: &str,
        batch_bytes: Bytes,
        caller: &Caller,
    ) -> Result<(u32, u64), RemoteError> {
        if self.registry.is_halted() {
            return Err(RemoteError::new(
                ErrorCode::Unavailable,
                "the agent is stopping: its buffer positions are behind the core (see its log)",
            ));
        }
        let grant = self.rules.authorize_produce(caller, stream_name)?;
        let summary = batch::verify(&batch_bytes, &self.limits)
            .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
        if let Grant::KeyPrefixes(_) = grant {
            let b = batch::open(&batch_bytes)
                .map_err(|e| RemoteError::new(ErrorCode::MalformedRequest, e.to_string()))?;
            for rec in b.records() {
                grant
                    .check_key(caller.name(), stream_name, rec.key().unwrap_or(""))
                    .map_err(|d| RemoteError::new(ErrorCode::PermissionDenied, d.to_string()))?;
            }
        }
        let stream = self.stream(stream_name).await?;
        let first_seq = stream
            .buffer
            .append(
                summary.records as u32,
                summary.max_timestamp_ms,
                batch_bytes,
            )
            .await
            .map_err(|e| match e {
                BufferError::Full { .. } => RemoteError::new(ErrorCode::BufferFull, e.to_string()),
                // Disk full: the batch was not stored (a partial frame is cut)
                // and space comes back as the forwarder drains the buffer.
                BufferError::Io { ref source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    RemoteError::new(ErrorCode::BufferFull, format!("edge disk full: {e}"))
                }
                // Not stored (an fsync failed; the buffer reopens from disk):
                // the producer sends the batch again.
                e if e.is_retryable() => RemoteError::new(ErrorCode::Unavailable, e.to_string()),
                other => RemoteError::new(ErrorCode::Internal, format!("edge buffer: {other}")),
            })?;
        metrics::counter!("strata_edge_records_in_total").increment(summary.records as u64);
        Ok((summary.records as u32, first_seq))
    }
}

impl Handler for EdgeHandler {
    async fn handle(&self, request: Bytes, caller: &Caller) -> Bytes {
        let req = match wire::decode_request(&request) {
            Ok(req) => req,
            // serve() verified the request already; answer rather than panic.
            Err(e) => return RemoteError::new(ErrorCode::MalformedRequest, e.to_string()).encode(),
        };
        let result = match req.body_as_produce_request() {
            Some(r) => self.produce(&request, r, caller).await,
            None => Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "an edge agent only accepts produce requests; send admin and fetch requests to the core",
            )),
        };
        result.unwrap_or_else(|e| {
            tracing::debug!(peer = %caller.addr, principal = caller.name(), error = %e, "produce refused");
            e.encode()
        })
    }
}
