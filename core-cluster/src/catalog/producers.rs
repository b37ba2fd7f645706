//! Producer-id expiry in the catalog (docs/operations.md, "Producer id
//! expiry").
//!
//! The catalog's producer table binds an id to the principal that
//! registered it (forwards under the id are refused to anyone else). The
//! catalog does not see forwards, so it learns that an id is still in use
//! from the shard leaders: every expiry round, each node reports the
//! registered ids that the dedup table of a shard it leads still holds and
//! whose catalog time is older than half the idle time
//! ([`stale_held`], committed as [`MetaCommand::ProducersSeen`](super::MetaCommand::ProducersSeen)).
//! A shard forgets an id after the idle time without appends; the metadata
//! leader forgets an id whose last sign of use (registration or report) is
//! older than the idle time ([`idle`], committed as
//! [`MetaCommand::ForgetProducers`](super::MetaCommand::ForgetProducers)):
//! by then no shard has held its dedup entry for at least half the idle
//! time (as long as the rounds run at most a quarter of it apart).
//!
//! Every time here comes from a command (the proposer's clock), never from
//! a replica's clock at apply, so every replica decides alike.

use super::{Catalog, MetaResponse};

impl Catalog {
    /// The last sign of use of a registered id: its registration or the
    /// latest shard report, whichever is later.
    pub fn producer_active_ms(&self, id: u64) -> Option<i64> {
        let p = self.producers.get(&id)?;
        let seen = self.producers_seen.get(&id).copied().unwrap_or(i64::MIN);
        Some(p.registered_ms.max(seen))
    }

    /// `ProducersSeen`: the registered ones of `ids` were held by a shard
    /// at `at_ms` (unknown ids are ignored: nothing grows for them).
    pub(crate) fn producers_seen(&mut self, ids: &[u64], at_ms: i64) -> MetaResponse {
        for id in ids {
            if self.producers.contains_key(id) {
                let seen = self.producers_seen.entry(*id).or_insert(at_ms);
                *seen = (*seen).max(at_ms);
            }
        }
        MetaResponse::Done
    }

    /// `ForgetProducers`: forgets each of `ids` whose last sign of use is
    /// still before `before_ms` (one reported or registered since the
    /// leader decided is kept).
    pub(crate) fn forget_producers(&mut self, ids: &[u64], before_ms: i64) -> MetaResponse {
        for id in ids {
            if self.producer_active_ms(*id).is_some_and(|t| t < before_ms) {
                self.producers.remove(id);
                self.producers_seen.remove(id);
            }
        }
        MetaResponse::Done
    }
}

/// The cut-off below which a time is older than `span_ms` before `now_ms`.
fn cutoff(now_ms: i64, span_ms: u64) -> i64 {
    now_ms.saturating_sub(i64::try_from(span_ms).unwrap_or(i64::MAX))
}

/// Metadata leader: the registered ids whose last sign of use is older
/// than `idle_ms` at `now_ms` (at most `max`, lowest first), and the
/// `before_ms` to commit with them. `idle_ms` 0: never (`None`).
pub fn idle(c: &Catalog, now_ms: i64, idle_ms: u64, max: usize) -> Option<(Vec<u64>, i64)> {
    if idle_ms == 0 {
        return None;
    }
    let before = cutoff(now_ms, idle_ms);
    let ids: Vec<u64> = c
        .producers
        .keys()
        .copied()
        .filter(|&id| c.producer_active_ms(id).is_some_and(|t| t < before))
        .take(max)
        .collect();
    (!ids.is_empty()).then_some((ids, before))
}

/// A shard leader's report: of the ids its dedup tables hold (`held`), the
/// registered ones whose catalog time is at or before `now_ms - idle_ms / 2`
/// (so each is reported about once per half idle time, not every round),
/// sorted and without repeats. `idle_ms` 0: nothing expires, nothing to report.
pub fn stale_held(
    c: &Catalog,
    held: impl IntoIterator<Item = u64>,
    now_ms: i64,
    idle_ms: u64,
) -> Vec<u64> {
    if idle_ms == 0 {
        return Vec::new();
    }
    let stale = cutoff(now_ms, idle_ms / 2);
    let mut ids: Vec<u64> = held
        .into_iter()
        .filter(|&id| c.producer_active_ms(id).is_some_and(|t| t <= stale))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MetaCommand, ProducerMeta};

    const DAY: i64 = 24 * 60 * 60 * 1000;
    const IDLE: u64 = 7 * DAY as u64;

    fn register(c: &mut Catalog, id: u64, at: i64) {
        let p = ProducerMeta {
            id,
            agent: format!("edge-{id}"),
            registered_ms: at,
            principal: Some(format!("device-{id}")),
        };
        assert_eq!(
            c.apply(&MetaCommand::RegisterProducer(p)),
            MetaResponse::Registered
        );
    }

    #[test]
    fn an_id_is_idle_after_the_idle_time_since_its_last_sign_of_use() {
        let mut c = Catalog::default();
        register(&mut c, 1, 0);
        register(&mut c, 2, 0);
        register(&mut c, 3, 5 * DAY);
        assert_eq!(idle(&c, 7 * DAY, IDLE, 100), None, "exactly idle is kept");
        assert_eq!(idle(&c, 7 * DAY + 1, IDLE, 100), Some((vec![1, 2], 1)));
        assert_eq!(idle(&c, 30 * DAY, 0, 100), None, "0: never");
        assert_eq!(
            idle(&c, 30 * DAY, IDLE, 2).unwrap().0,
            [1, 2],
            "at most max"
        );
        // A shard report keeps id 2.
        c.apply(&MetaCommand::ProducersSeen {
            ids: vec![2, 99],
            at_ms: 4 * DAY,
        });
        assert!(!c.producers.contains_key(&99), "unknown ids do not grow it");
        assert_eq!(c.producer_active_ms(2), Some(4 * DAY));
        let (ids, before) = idle(&c, 8 * DAY, IDLE, 100).unwrap();
        assert_eq!(ids, [1]);
        c.apply(&MetaCommand::ForgetProducers {
            ids,
            before_ms: before,
        });
        assert_eq!(c.producers.keys().copied().collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_forget_spares_an_id_used_since_the_leader_decided() {
        let mut c = Catalog::default();
        register(&mut c, 1, 0);
        register(&mut c, 2, 0);
        let (ids, before_ms) = idle(&c, 8 * DAY, IDLE, 100).unwrap();
        // A report lands between the decision and its commit.
        c.apply(&MetaCommand::ProducersSeen {
            ids: vec![2],
            at_ms: 8 * DAY,
        });
        c.apply(&MetaCommand::ForgetProducers { ids, before_ms });
        assert_eq!(c.producers.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(c.producers_seen.keys().copied().collect::<Vec<_>>(), [2]);
        // Forgotten ids lose their report time too; an id registered again
        // starts over (and may be claimed by another principal).
        c.apply(&MetaCommand::ForgetProducers {
            ids: vec![2],
            before_ms: 9 * DAY,
        });
        assert!(c.producers.is_empty() && c.producers_seen.is_empty());
        register(&mut c, 2, 10 * DAY);
        assert_eq!(c.producer_active_ms(2), Some(10 * DAY));
    }

    #[test]
    fn shard_leaders_report_held_ids_about_once_per_half_idle_time() {
        let mut c = Catalog::default();
        register(&mut c, 1, 0);
        register(&mut c, 2, 3 * DAY);
        let held = [2, 1, 1, 77];
        assert!(stale_held(&c, held, 3 * DAY, IDLE).is_empty());
        assert_eq!(stale_held(&c, held, 4 * DAY, IDLE), [1], "3.5 days old");
        assert_eq!(stale_held(&c, held, 7 * DAY, IDLE), [1, 2]);
        assert!(stale_held(&c, held, 7 * DAY, 0).is_empty());
        c.apply(&MetaCommand::ProducersSeen {
            ids: vec![1, 2],
            at_ms: 7 * DAY,
        });
        assert!(stale_held(&c, held, 10 * DAY, IDLE).is_empty());
    }

    /// Held ids reported every round stay forever; an id no shard holds
    /// leaves after the idle time, and the catalog stays bounded by the ids
    /// in use over one idle time (plus half of one).
    #[test]
    fn the_catalog_keeps_only_ids_in_use_as_a_fleet_comes_and_goes() {
        let mut c = Catalog::default();
        let (round, per_round) = (60 * 60 * 1000, 10);
        let mut max_len = 0;
        let days = 60;
        for r in 0..(days * DAY / round) {
            let now = r * round;
            // 10 new devices every hour, each in use for 2 days; one device
            // forever.
            for k in 0..per_round {
                register(&mut c, r as u64 * per_round + k + 1, now);
            }
            if r == 0 {
                register(&mut c, 1_000_000, now);
            }
            let in_use = c.producers.keys().copied().filter(|&i| {
                let born = (i - 1) / per_round * round as u64;
                i == 1_000_000 || born as i64 + 2 * DAY > now
            });
            let report = stale_held(&c, in_use.collect::<Vec<_>>(), now, IDLE);
            if !report.is_empty() {
                c.apply(&MetaCommand::ProducersSeen {
                    ids: report,
                    at_ms: now,
                });
            }
            if let Some((ids, before_ms)) = idle(&c, now, IDLE, 10_000) {
                c.apply(&MetaCommand::ForgetProducers { ids, before_ms });
            }
            max_len = max_len.max(c.producers.len());
        }
        eprintln!(
            "catalog: at most {max_len} producer ids over {days} days ({} registered)",
            days * DAY / round * per_round as i64 + 1
        );
        assert!(c.producers.contains_key(&1_000_000));
        // In use 2 days, reported up to 3.5 days before, kept 7 more days
        // after its last report: at most 9 days of devices. (Without
        // expiry: all 14,400.)
        let per_day = (DAY / round) as usize * per_round as usize;
        assert!(max_len <= 9 * per_day + 1 + per_round as usize, "{max_len}");
        assert!(max_len >= 7 * per_day, "{max_len}");
        assert!(c.producers_seen.len() <= c.producers.len());
    }
}
