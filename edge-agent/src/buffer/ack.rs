//! Acknowledging what the core has: [`StreamBuffer::ack`] (written at
//! once), [`StreamBuffer::ack_lazily`] (the forwarder's, written at most
//! every [`ACK_PERSIST_INTERVAL`]) and [`StreamBuffer::flush_ack`] (a clean
//! shutdown); see the module doc of `buffer` for what recovery makes of them.

use super::format::{encode_acked, ACKED_FILE, ACKED_TMP_FILE};
use super::{remove_segment_file, BufferError, StreamBuffer};
use std::time::{Duration, Instant};
use strata_segment_log::atomic::{write_file_atomic, Durability};

/// Most time a lazy ack ([`StreamBuffer::ack_lazily`]) stays unwritten.
pub const ACK_PERSIST_INTERVAL: Duration = Duration::from_millis(500);

impl StreamBuffer {
    /// Records below `seq` are in the core: persist that, then delete the
    /// segments entirely below it (never the active one). Stale acks are
    /// ignored; an ack beyond `durable_seq` is an error.
    pub fn ack(&mut self, seq: u64) -> Result<(), BufferError> {
        self.ack_at(seq, None)
    }

    /// [`Self::ack`] without writing the `acked` file, unless it was last
    /// written `ACK_PERSIST_INTERVAL` or more before `now`: the forwarder
    /// acks every round, and an fsync per round would sit on the path of
    /// every record. Safe because what is acked is in the core: after a
    /// crash the agent resumes from the older persisted position and
    /// forwards again what the core already has, which the core drops by
    /// producer id and position (at most one interval of re-sent records).
    /// Segments below `seq` are deleted at once; recovery starts from the
    /// first segment left when that is beyond the persisted position.
    pub fn ack_lazily(&mut self, seq: u64, now: Instant) -> Result<(), BufferError> {
        self.ack_at(seq, Some(now))
    }

    fn ack_at(&mut self, seq: u64, lazy_now: Option<Instant>) -> Result<(), BufferError> {
        self.recover_if_due(lazy_now.unwrap_or_else(Instant::now));
        if seq <= self.acked_seq {
            return Ok(());
        }
        if seq > self.durable_seq {
            return Err(BufferError::AckBeyondDurable {
                seq,
                durable_seq: self.durable_seq,
            });
        }
        let persist = lazy_now.is_none_or(|now| {
            now.saturating_duration_since(self.acked_persisted_at) >= ACK_PERSIST_INTERVAL
        });
        if persist {
            self.persist_acked(seq)?;
            self.acked_persisted_at = lazy_now.unwrap_or_else(Instant::now);
        }
        self.acked_seq = seq;
        while let Some(front) = self.segments.front() {
            let is_active = self.active && self.segments.len() == 1;
            if is_active || front.end_seq > seq {
                break;
            }
            let segment = self.segments.pop_front().expect("front exists");
            remove_segment_file(&*self.fs, &segment);
        }
        Ok(())
    }

    pub(super) fn persist_acked(&mut self, seq: u64) -> Result<(), BufferError> {
        let (path, tmp) = (self.dir.join(ACKED_FILE), self.dir.join(ACKED_TMP_FILE));
        write_file_atomic(&*self.fs, &path, &tmp, &encode_acked(seq), Durability::Data)
            .map_err(|e| BufferError::io(e.op, &e.path, e.source))?;
        self.acked_persisted = seq;
        Ok(())
    }

    /// Writes the `acked` file if lazy acks left it behind (a clean
    /// shutdown calls this, so a restart does not send anything again).
    pub fn flush_ack(&mut self) -> Result<(), BufferError> {
        self.recover_if_due(Instant::now());
        if self.acked_seq > self.acked_persisted {
            self.persist_acked(self.acked_seq)?;
            self.acked_persisted_at = Instant::now();
        }
        Ok(())
    }
}
