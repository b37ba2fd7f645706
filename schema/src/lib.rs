//! Strata's shared vocabulary: the flatbuffers wire schema (`schema/fbs`), the
//! record-batch codec, frame limits, and Kinesis-style hash-key ranges.
//!
//! This crate is pure: no tokio, no I/O. Everything that reads bytes from the
//! network or disk verifies them here before use and bounds every length.
//!
//! `unsafe` is denied everywhere but in the flatc output (`generated`), whose
//! accessors use it on buffers the flatbuffers verifier has checked.
#![deny(unsafe_code)]

pub mod batch;
pub mod frame;
pub mod hashkey;
pub mod wire;

#[allow(clippy::all, clippy::pedantic, unused_imports, dead_code, mismatched_lifetime_syntaxes)]
#[allow(unsafe_code)]
#[rustfmt::skip]
mod generated {
    include!("generated/strata_generated.rs");
}

pub use generated::strata::wire as fb;

/// ALPN protocol id spoken on every Strata QUIC connection.
pub const ALPN: &[u8] = b"strata/1";

/// A name (of a stream, consumer group, group member or principal) that
/// cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name must be 1 to 128 characters, got {len}")]
    Length { kind: &'static str, len: usize },
    #[error("{kind} name {name:?} has the character {c:?}; use only A-Z a-z 0-9 _ - .")]
    Character {
        kind: &'static str,
        name: String,
        c: char,
    },
    #[error("{kind} name {name:?} must start with a letter or a digit")]
    Start { kind: &'static str, name: String },
}

/// The error of [`validate_stream_name`].
pub type StreamNameError = NameError;

/// Validates a name of kind `kind` ("stream", "group", "member",
/// "principal"): 1-128 characters of `[A-Za-z0-9_.-]`, starting with a
/// letter or a digit (so never `.` or `..`, which would name directories).
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 128 {
        return Err(NameError::Length {
            kind,
            len: name.len(),
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameError::Character {
            kind,
            name: name.to_string(),
            c,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::Start {
            kind,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Validates a stream name (see [`validate_name`]).
pub fn validate_stream_name(name: &str) -> Result<(), NameError> {
    validate_name("stream", name)
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn dot_names_and_bad_starts_are_refused() {
        for bad in [".", "..", "-x", "_x", ".hidden"] {
            assert!(
                matches!(validate_stream_name(bad), Err(NameError::Start { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(matches!(
            validate_name("group", "a/b"),
            Err(NameError::Character { c: '/', .. })
        ));
        assert!(matches!(
            validate_name("member", ""),
            Err(NameError::Length { len: 0, .. })
        ));
        assert!(validate_name("member", &"a".repeat(129)).is_err());
        for good in ["a", "0", "telemetry", "a.b-c_d", &"z".repeat(128)] {
            assert_eq!(validate_stream_name(good), Ok(()), "{good:?}");
        }
        let e = validate_stream_name("..").unwrap_err().to_string();
        assert!(e.contains("stream name \"..\" must start"), "{e}");
    }
}
