//! The errors of the Kinesis API: each is answered as HTTP 400 with
//! `{"__type": ..., "message": ...}` (AWS JSON 1.1), the `__type` being the
//! Kinesis exception name clients match on. Kinesis answers
//! `AccessDeniedException` with 400 too; only an internal failure is 500.

use super::sigv4::SigError;
use strata_client::ClientError;
use strata_schema::fb::ErrorCode;
use strata_schema::wire::RemoteError;

/// One refused Kinesis request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct KinesisError {
    /// The Kinesis exception name (`__type`).
    pub kind: &'static str,
    pub message: String,
}

impl KinesisError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// HTTP status: 500 for internal failures, 503 when the core cannot be
    /// reached (boto3 retries both), 400 for everything else.
    pub fn status(&self) -> u16 {
        match self.kind {
            "InternalFailure" => 500,
            "ServiceUnavailable" => 503,
            _ => 400,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"__type": self.kind, "message": self.message}))
            .expect("a JSON object encodes")
    }
}

impl From<SigError> for KinesisError {
    fn from(e: SigError) -> Self {
        Self::new(e.kinesis_type(), e.to_string())
    }
}

impl From<RemoteError> for KinesisError {
    fn from(e: RemoteError) -> Self {
        Self::new(kind_of(e.code), e.message)
    }
}

impl From<ClientError> for KinesisError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Remote(r) => r.into(),
            other => Self::new(
                "ServiceUnavailable",
                format!("the core cannot be reached from this edge agent: {other}"),
            ),
        }
    }
}

/// The Kinesis exception for a Strata error code.
pub fn kind_of(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnknownStream | ErrorCode::UnknownShard => "ResourceNotFoundException",
        ErrorCode::StreamExists => "ResourceInUseException",
        ErrorCode::PermissionDenied => "AccessDeniedException",
        ErrorCode::BufferFull => "ProvisionedThroughputExceededException",
        ErrorCode::InvalidArgument
        | ErrorCode::MalformedRequest
        | ErrorCode::RecordTooLarge
        | ErrorCode::BatchTooLarge => "InvalidArgumentException",
        ErrorCode::OffsetOutOfRange => "InvalidArgumentException",
        ErrorCode::ShardClosed => "ResourceInUseException",
        ErrorCode::Unavailable | ErrorCode::NotLeader => "ServiceUnavailable",
        _ => "InternalFailure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_kinesis_json_with_the_right_status() {
        let e = KinesisError::from(RemoteError::new(ErrorCode::UnknownStream, "no stream x"));
        assert_eq!(e.status(), 400);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["__type"], "ResourceNotFoundException");
        assert_eq!(v["message"], "no stream x");
        let denied = KinesisError::from(RemoteError::new(ErrorCode::PermissionDenied, "no"));
        assert_eq!(
            (denied.kind, denied.status()),
            ("AccessDeniedException", 400)
        );
        assert_eq!(KinesisError::new("InternalFailure", "x").status(), 500);
        let sig = KinesisError::from(SigError::UnknownKey("SKX".into()));
        assert_eq!(sig.kind, "UnrecognizedClientException");
    }
}
