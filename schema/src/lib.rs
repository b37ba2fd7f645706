//! Strata's shared vocabulary: the flatbuffers wire schema (`schema/fbs`), the
//! record-batch codec, frame limits, and Kinesis-style hash-key ranges.
//!
//! This crate is pure: no tokio, no I/O. Everything that reads bytes from the
//! network or disk verifies them here before use and bounds every length.

pub mod batch;
pub mod frame;
pub mod hashkey;
pub mod wire;

#[allow(clippy::all, clippy::pedantic, unused_imports, dead_code, mismatched_lifetime_syntaxes)]
#[rustfmt::skip]
mod generated {
    include!("generated/strata_generated.rs");
}

pub use generated::strata::wire as fb;

/// ALPN protocol id spoken on every Strata QUIC connection.
pub const ALPN: &[u8] = b"strata/1";

/// A stream name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    #[error("stream name must be 1 to 128 characters, got {0}")]
    Length(usize),
    #[error("stream name {name:?} has the character {c:?}; use only A-Z a-z 0-9 _ - .")]
    Character { name: String, c: char },
}

/// Validates a stream name: 1-128 characters of `[A-Za-z0-9_.-]`.
pub fn validate_stream_name(name: &str) -> Result<(), StreamNameError> {
    if name.is_empty() || name.len() > 128 {
        return Err(StreamNameError::Length(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(StreamNameError::Character {
            name: name.to_string(),
            c,
        });
    }
    Ok(())
}
