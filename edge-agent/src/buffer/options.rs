//! The limits, full policy and encryption keys of one stream buffer.

use super::crypto::SEAL_OVERHEAD_BYTES;
use super::format::{FRAME_OVERHEAD_BYTES, SEGMENT_HEADER_BYTES};
use super::BufferError;
use std::path::PathBuf;
use strata_segment_log::prefill::Prefill;

/// What an append does when the buffer is at `buffer_bytes_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse the batch; the producer retries later.
    #[default]
    Reject,
    /// Delete the oldest unforwarded segments to make room.
    DropOldest,
}

/// Limits and policy of one stream buffer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferOptions {
    /// A segment is sealed and a new one started when the next frame would
    /// make it bigger than this (a single bigger frame gets its own segment).
    pub segment_bytes_max: u64,
    /// Most bytes the segment files may occupy on disk.
    pub buffer_bytes_max: u64,
    /// What to do when an append would exceed `buffer_bytes_max`.
    pub full_policy: FullPolicy,
    /// Largest batch accepted; on recovery a frame claiming more is corrupt.
    pub batch_bytes_max: usize,
    /// Key file (64 hex characters, mode 0600) encrypting new segments;
    /// unset: new segments are plaintext.
    pub encryption_key_file: Option<PathBuf>,
    /// Key files of segments written before a key rotation: read, never
    /// written with.
    pub encryption_previous_key_files: Vec<PathBuf>,
    /// Zero-filling the active segment ahead of small group commits
    /// (`strata_segment_log::prefill`). Not a configuration key: tests that
    /// look at file sizes turn it off.
    #[serde(skip)]
    pub prefill: Prefill,
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 * 1024 * 1024,
            buffer_bytes_max: 1024 * 1024 * 1024,
            full_policy: FullPolicy::Reject,
            batch_bytes_max: 16 * 1024 * 1024,
            encryption_key_file: None,
            encryption_previous_key_files: Vec::new(),
            prefill: Prefill::default(),
        }
    }
}

impl BufferOptions {
    /// Checks the options against each other; the error names the bad key.
    pub fn validate(&self) -> Result<(), BufferError> {
        let invalid = |key, reason: String| Err(BufferError::InvalidOptions { key, reason });
        if self.segment_bytes_max == 0 {
            return invalid("segment_bytes_max", "must be > 0".to_owned());
        }
        // Sealing adds a nonce counter and a tag to each frame and a header
        // to each segment.
        let (frame_overhead, header) = if self.encryption_key_file.is_some() {
            (
                FRAME_OVERHEAD_BYTES + SEAL_OVERHEAD_BYTES,
                SEGMENT_HEADER_BYTES,
            )
        } else {
            (FRAME_OVERHEAD_BYTES, 0)
        };
        let frame_bytes_max = self.batch_bytes_max as u64 + frame_overhead as u64;
        if self.batch_bytes_max == 0 || frame_bytes_max > u64::from(u32::MAX) {
            return invalid(
                "batch_bytes_max",
                format!("must be in 1..={}", u32::MAX as usize - frame_overhead),
            );
        }
        // Once everything is acked only the active segment remains, and a
        // largest batch must still fit next to it (in a new segment).
        let overhead = (frame_overhead + header) as u64;
        let needed = self.segment_bytes_max + self.batch_bytes_max as u64 + overhead;
        if self.buffer_bytes_max < needed {
            return invalid(
                "buffer_bytes_max",
                format!(
                    "must be >= segment_bytes_max + batch_bytes_max + {overhead} = {needed}, got {}",
                    self.buffer_bytes_max
                ),
            );
        }
        Ok(())
    }
}
