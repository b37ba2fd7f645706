//! Recovering from a failed fsync by reopening the buffer from disk.
//!
//! After an fsync error the disk may not hold what the page cache shows:
//! Linux may mark the pages that failed to write clean without writing
//! them, so a later fsync succeeding proves nothing about them either.
//! Everything past the last successful sync (`durable_seq`) is then of
//! unknown state, and nothing may be acknowledged on it. The buffer:
//!
//! 1. refuses the records not known durable to their producers with the
//!    retryable [`BufferError::NotStored`]: the group whose fsync failed
//!    gets it from [`StreamBuffer::finish_sync`] (or from the append whose
//!    seal failed), and appends earlier in the same group from
//!    [`StreamBuffer::begin_sync`];
//! 2. takes no appends or syncs ([`BufferError::Recovering`], also
//!    retryable) until it has reopened. [`StreamBuffer::recover_at`]
//!    attempts that: the driver calls it before each group of appends, and
//!    acks call it (and go on whatever it gives). The decision is [`Reopen::decide`]: the first attempt at
//!    once, later ones paced ([`reopen_backoff`], doubling from
//!    [`REOPEN_BACKOFF_MIN`] to [`REOPEN_BACKOFF_MAX`]), so producers
//!    retrying against a dead disk do not make it a busy loop;
//! 3. reopens: first it cuts what is not known durable (segment files
//!    starting at or after `durable_seq` are removed, the one holding it is
//!    truncated there), so a refused record is not stored (unless the power
//!    fails before the cut is durable: then it may come back, as a torn tail
//!    may); then it recovers exactly as [`StreamBuffer::open`] does, whose
//!    fsyncs of the cut segment and the directory must succeed before
//!    anything is taken again. The seqs of the refused records are handed
//!    out again: they were never forwarded, as the forwarder reads only
//!    below `durable_seq`; those below it never are, even when no segment
//!    file below it is left to tell (the acked position, lazy acks
//!    included, is written then). The counters carry over.
//!
//! Reads ([`StreamBuffer::read_durable`]) go on meanwhile: records below
//! `durable_seq` were fsynced before the failure.

use super::{BufferError, StreamBuffer};
use std::time::{Duration, Instant};

/// Pause after the first failed reopen attempt.
pub const REOPEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between reopen attempts.
pub const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether the buffer's in-memory state matches its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    Usable,
    /// An I/O failure left the disk's state unknown past `durable_seq`.
    MustReopen(Reopen),
}

/// A pending reopen: why, and how the attempts went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reopen {
    /// The failure that made the disk's state unknown.
    pub reason: String,
    /// Attempts that failed so far.
    pub failed: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// No attempt before this.
    pub next_attempt_at: Instant,
}

/// What a call finds while the buffer must reopen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Attempt the reopen now.
    Attempt,
    /// Refuse the call: the next attempt is not due yet.
    Refuse,
}

impl Reopen {
    /// A reopen needed since `now` because of `reason`: due at once.
    pub fn new(reason: String, now: Instant) -> Self {
        Self {
            reason,
            failed: 0,
            last_error: None,
            next_attempt_at: now,
        }
    }

    /// Whether a call at `now` attempts the reopen. `sync_in_flight`: a
    /// sync ticket's fsyncs run outside the lock, and a reopen must not
    /// swap the files under them (cannot happen while the buffer must
    /// reopen, since `begin_sync` refuses then; checked anyway).
    pub fn decide(&self, now: Instant, sync_in_flight: bool) -> Decision {
        match self.next_attempt_at.checked_duration_since(now) {
            _ if sync_in_flight => Decision::Refuse,
            Some(wait) if !wait.is_zero() => Decision::Refuse,
            _ => Decision::Attempt,
        }
    }

    /// An attempt at `now` failed with `error`: the next one waits longer.
    pub fn attempt_failed(&mut self, error: String, now: Instant) {
        self.failed = self.failed.saturating_add(1);
        self.last_error = Some(error);
        self.next_attempt_at = now + reopen_backoff(self.failed);
    }
}

/// The pause after `failed` failed attempts (at least one).
pub fn reopen_backoff(failed: u32) -> Duration {
    let doublings = failed.saturating_sub(1).min(16);
    REOPEN_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(REOPEN_BACKOFF_MAX)
}

impl StreamBuffer {
    /// Marks the disk's state unknown past `durable_seq` after `reason` (a
    /// failed fsync or cut), and returns the error for the records refused
    /// because of it. The first reason is kept until the reopen.
    pub(super) fn must_reopen(&mut self, reason: String) -> BufferError {
        if self.health == Health::Usable {
            tracing::error!(
                dir = %self.dir.display(),
                %reason,
                durable_seq = self.durable_seq,
                refused_records = self.next_seq - self.durable_seq,
                "edge buffer I/O failure: records not yet durable are refused; reopening from disk"
            );
            self.health =
                Health::MustReopen(Reopen::new(reason.clone(), std::time::Instant::now()));
        }
        BufferError::NotStored {
            dir: self.dir.clone(),
            reason,
        }
    }

    /// Refuses the call while the buffer must reopen.
    pub(super) fn check_usable(&self) -> Result<(), BufferError> {
        match &self.health {
            Health::Usable => Ok(()),
            Health::MustReopen(reopen) => Err(self.recovering(reopen)),
        }
    }

    fn recovering(&self, reopen: &Reopen) -> BufferError {
        BufferError::Recovering {
            dir: self.dir.clone(),
            reason: reopen.reason.clone(),
            failed_reopens: reopen.failed,
            last_error: reopen.last_error.clone(),
        }
    }

    /// Whether the buffer must reopen before it takes appends.
    pub fn must_recover(&self) -> bool {
        self.health != Health::Usable
    }

    /// [`recover_at`](Self::recover_at) now.
    pub fn recover(&mut self) -> Result<(), BufferError> {
        self.recover_at(Instant::now())
    }

    /// After an I/O failure, reopens the buffer from disk if an attempt is
    /// due at `now` (module doc); `Ok` when the buffer is usable. Never
    /// call it between an append whose producer is still waiting and the
    /// sync that answers it: the reopen would discard that append (the
    /// driver calls it only before a group).
    pub fn recover_at(&mut self, now: Instant) -> Result<(), BufferError> {
        let Health::MustReopen(reopen) = &self.health else {
            return Ok(());
        };
        if reopen.decide(now, self.sync_in_flight) == Decision::Refuse {
            return Err(self.recovering(reopen));
        }
        match self.reopen() {
            Ok(()) => Ok(()),
            Err(err) => {
                let error = err.to_string();
                let Health::MustReopen(reopen) = &mut self.health else {
                    unreachable!("a failed reopen leaves the buffer as it was");
                };
                reopen.attempt_failed(error.clone(), now);
                let retry_in_ms = reopen_backoff(reopen.failed).as_millis() as u64;
                tracing::warn!(dir = %self.dir.display(), %error, failed_reopens = reopen.failed, retry_in_ms, "edge buffer: reopening after an I/O failure failed");
                let Health::MustReopen(reopen) = &self.health else {
                    unreachable!("still to reopen");
                };
                Err(self.recovering(reopen))
            }
        }
    }

    /// The acks' part in recovery: they attempt a due reopen, so that a
    /// buffer no producer writes to recovers all the same, but go on
    /// whatever it gives (a failed attempt is logged): what they ack is
    /// below `durable_seq`, fsynced before any failure, and an ack that
    /// failed would only make the forwarder send it again.
    pub(super) fn recover_if_due(&mut self, now: Instant) {
        let _ = self.recover_at(now);
    }

    /// Cuts what is not known durable, then replaces `self` with the buffer
    /// recovered from disk (module doc). On `Err` `self` is unchanged but
    /// for the cut, which a later attempt repeats.
    fn reopen(&mut self) -> Result<(), BufferError> {
        self.discard_unknown_tail()?;
        let (mut fresh, recovery) = Self::open_with_keys(
            std::sync::Arc::clone(&self.fs),
            &self.dir,
            self.opts.clone(),
            self.keys.clone(),
        )?;
        if fresh.next_seq < self.durable_seq {
            // No segment file below `durable_seq` is left: all were acked
            // and deleted (the `acked` file, written lazily, may be older),
            // or the disk lost them. Seqs below it may have been forwarded,
            // so numbering goes on from it, in a new segment.
            if self.acked_seq < self.durable_seq {
                tracing::warn!(dir = %self.dir.display(), durable_seq = self.durable_seq, found_seq = fresh.next_seq, "edge buffer: no record on disk reaches durable_seq (a gap an earlier crash left, or records the disk lost); numbering goes on from it");
            }
            fresh.next_seq = self.durable_seq;
            fresh.durable_seq = self.durable_seq;
            fresh.active = false;
        }
        // What the core has stays acked, and is written now: when no
        // segment below `durable_seq` is left, the `acked` file is what
        // tells a later open where numbering goes on.
        fresh.ack(self.acked_seq)?;
        fresh.dropped_records = self.dropped_records;
        fresh.fsyncs = self.fsyncs;
        fresh.commits = self.commits;
        fresh.reopens = self.reopens + 1;
        fresh.scratch = std::mem::take(&mut self.scratch);
        let refused = self.next_seq - self.durable_seq;
        *self = fresh;
        tracing::info!(
            dir = %self.dir.display(),
            refused_records = refused,
            next_seq = self.next_seq,
            truncated_bytes = recovery.truncated_bytes,
            "edge buffer reopened after an I/O failure; taking records again"
        );
        Ok(())
    }

    /// Removes the segment files starting at or after `durable_seq` and
    /// truncates the one holding it at its frame (already-removed files are
    /// fine: a failed attempt may have removed some).
    fn discard_unknown_tail(&self) -> Result<(), BufferError> {
        let durable = self.durable_seq;
        for segment in self.segments.iter().rev() {
            if segment.first_seq >= durable {
                match self.fs.remove_file(&segment.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BufferError::io("remove segment", &segment.path, e)),
                }
                continue;
            }
            // `durable_seq` may lie past the segment's end, in a gap a torn
            // crash left.
            let offset = if durable < segment.end_seq {
                segment.offset_of(durable, self.opts.batch_bytes_max)?
            } else {
                segment.len_bytes
            };
            segment
                .file
                .set_len(offset)
                .map_err(|e| BufferError::io("truncate segment", &segment.path, e))?;
            break;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_is_at_once_and_later_ones_back_off_to_the_cap() {
        let t0 = Instant::now();
        let mut reopen = Reopen::new("fsync failed".into(), t0);
        assert_eq!(reopen.decide(t0, false), Decision::Attempt);
        let mut at = t0;
        for (failed, pause_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1600)] {
            reopen.attempt_failed(format!("attempt {failed}"), at);
            let pause = Duration::from_millis(pause_ms);
            assert_eq!(reopen.failed, failed);
            assert_eq!(reopen.next_attempt_at, at + pause);
            let just_before = at + pause - Duration::from_millis(1);
            assert_eq!(reopen.decide(just_before, false), Decision::Refuse);
            assert_eq!(reopen.decide(at + pause, false), Decision::Attempt);
            at += pause;
        }
        assert_eq!(reopen.last_error.as_deref(), Some("attempt 5"));
        assert_eq!(reopen_backoff(7), REOPEN_BACKOFF_MAX);
        assert_eq!(reopen_backoff(u32::MAX), REOPEN_BACKOFF_MAX);
        assert_eq!(reopen.reason, "fsync failed", "the first reason is kept");
    }

    #[test]
    fn no_attempt_while_a_sync_ticket_runs() {
        let t0 = Instant::now();
        let reopen = Reopen::new("fsync failed".into(), t0);
        assert_eq!(
            reopen.decide(t0 + REOPEN_BACKOFF_MAX, true),
            Decision::Refuse
        );
    }
}
