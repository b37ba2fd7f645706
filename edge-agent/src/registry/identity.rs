//! The agent's producer identity: its current producer id, the ids it
//! retired (`--retire-producer`) with the positions each still forwards,
//! and the buffer positions not yet checked against the core's high-water
//! marks ([`super::high_water`]).
//!
//! Files in the data directory (all replaced atomically and fsynced):
//!
//! - `producer_id`: the current id, decimal text ([`super::producer`]);
//! - `retired_producer_ids.json`: a JSON array, oldest first, of
//!   `{"producer_id": ID, "retired_ms": MS, "switch_at": {"STREAM": POS}}`:
//!   the records of STREAM below POS (and at or above the previous retired
//!   id's POS) are forwarded under ID, those from POS on under the next id.
//!   The record stays after the old records drained, as the history of the
//!   agent's ids;
//! - `high_water.json`: `{"producer_id": ID, "unchecked_from": {"STREAM":
//!   POS}}`: records of STREAM from POS on were numbered while the core's
//!   marks for ID were not known (the agent started or opened the stream
//!   and has not heard from the core yet). Absent streams are checked. A
//!   file naming another id is stale and ignored.

use super::cache::write_durably;
use super::RegistryError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One retired producer id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retired {
    pub producer_id: u64,
    /// When it was retired (ms since the epoch).
    pub retired_ms: i64,
    /// Per stream: the first position forwarded under the next id.
    pub switch_at: BTreeMap<String, u64>,
}

/// The on-disk form of `high_water.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Unchecked {
    producer_id: u64,
    unchecked_from: BTreeMap<String, u64>,
}

/// How the agent starts: normally, or retiring its producer id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartMode {
    /// `--retire-producer`.
    pub retire: bool,
    /// `--previous-producer-id`: the id to retire when `producer_id` is lost.
    pub previous_id: Option<u64>,
}

/// The agent's producer identity (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub current: u64,
    pub retired: Vec<Retired>,
    /// Stream → where its unchecked records start.
    pub unchecked: BTreeMap<String, u64>,
}

pub fn retired_path(data_dir: &Path) -> PathBuf {
    data_dir.join("retired_producer_ids.json")
}

fn unchecked_path(data_dir: &Path) -> PathBuf {
    data_dir.join("high_water.json")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RegistryError> {
    match std::fs::read(path) {
        Ok(b) => {
            serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| RegistryError::BadIdentityFile {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::io("reading", path, e)),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RegistryError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| RegistryError::EncodeState {
        path: path.to_path_buf(),
        source,
    })?;
    write_durably(path, &bytes)
}

impl Identity {
    /// Reads the identity from `data_dir` (creating the producer id on a
    /// first start). With `mode.retire`, an id retired by an interrupted
    /// `--retire-producer` is taken back (the retirement is redone), and a
    /// lost `producer_id` may be replaced by `mode.previous_id`.
    pub fn load(data_dir: &Path, mode: StartMode) -> Result<Self, RegistryError> {
        strata_segment_log::fs::create_dir_all_durably(&strata_segment_log::fs::StdFs, data_dir)
            .map_err(|e| RegistryError::io("creating", data_dir, e))?;
        let mut retired: Vec<Retired> = read_json(&retired_path(data_dir))?.unwrap_or_default();
        let current = match (super::producer::read(data_dir)?, mode.previous_id) {
            (Some(id), Some(previous)) if id != previous => {
                return Err(RegistryError::PreviousIdMismatch {
                    path: data_dir.join("producer_id"),
                    id,
                    previous,
                })
            }
            (Some(id), _) => id,
            (None, Some(previous)) if mode.retire => previous,
            (None, _) => super::producer::producer_id(data_dir)?,
        };
        if let Some(i) = retired.iter().position(|r| r.producer_id == current) {
            if !mode.retire {
                return Err(RegistryError::InterruptedRetire {
                    id: current,
                    path: retired_path(data_dir),
                });
            }
            retired.truncate(i);
        }
        let unchecked = read_json::<Unchecked>(&unchecked_path(data_dir))?
            .filter(|u| u.producer_id == current)
            .map(|u| u.unchecked_from)
            .unwrap_or_default();
        Ok(Self {
            current,
            retired,
            unchecked,
        })
    }

    /// The id that forwards `stream`'s record at `seq`, and the position
    /// where that id's range ends (`None`: the current id, open-ended).
    pub fn producer_for(&self, stream: &str, seq: u64) -> (u64, Option<u64>) {
        producer_for(&self.retired, self.current, stream, seq)
    }

    /// Writes `high_water.json`.
    pub(super) fn save_unchecked(&self, data_dir: &Path) -> Result<(), RegistryError> {
        write_json(
            &unchecked_path(data_dir),
            &Unchecked {
                producer_id: self.current,
                unchecked_from: self.unchecked.clone(),
            },
        )
    }

    /// Writes the retired ids, then the current id, then the unchecked
    /// positions: a crash between the first two leaves the current id in
    /// the retired list, which a normal start refuses and
    /// `--retire-producer` redoes.
    pub(super) fn save_retirement(&self, data_dir: &Path) -> Result<(), RegistryError> {
        write_json(&retired_path(data_dir), &self.retired)?;
        write_durably(
            &data_dir.join("producer_id"),
            self.current.to_string().as_bytes(),
        )?;
        self.save_unchecked(data_dir)
    }
}

/// See [`Identity::producer_for`]: `retired` is oldest first and each
/// stream's switch positions grow from one retired id to the next.
pub fn producer_for(
    retired: &[Retired],
    current: u64,
    stream: &str,
    seq: u64,
) -> (u64, Option<u64>) {
    for r in retired {
        if let Some(&end) = r.switch_at.get(stream) {
            if seq < end {
                return (r.producer_id, Some(end));
            }
        }
    }
    (current, None)
}

/// A random non-zero id that is neither `current` nor a retired one.
pub fn fresh_id(current: u64, retired: &[Retired]) -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 && id != current && retired.iter().all(|r| r.producer_id != id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retired(id: u64, switch: &[(&str, u64)]) -> Retired {
        Retired {
            producer_id: id,
            retired_ms: 1,
            switch_at: switch.iter().map(|(s, p)| (s.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn positions_below_a_switch_go_under_the_retired_id() {
        let r = vec![
            retired(5, &[("a", 100), ("b", 7)]),
            retired(6, &[("a", 150)]),
        ];
        assert_eq!(producer_for(&r, 9, "a", 0), (5, Some(100)));
        assert_eq!(producer_for(&r, 9, "a", 99), (5, Some(100)));
        assert_eq!(producer_for(&r, 9, "a", 100), (6, Some(150)));
        assert_eq!(producer_for(&r, 9, "a", 149), (6, Some(150)));
        assert_eq!(producer_for(&r, 9, "a", 150), (9, None));
        assert_eq!(producer_for(&r, 9, "b", 6), (5, Some(7)));
        assert_eq!(producer_for(&r, 9, "b", 7), (9, None));
        // A stream opened after the retirements is all under the current id.
        assert_eq!(producer_for(&r, 9, "c", 0), (9, None));
        assert_eq!(producer_for(&[], 9, "a", 0), (9, None));
    }

    #[test]
    fn a_fresh_id_is_new() {
        let r = vec![retired(5, &[])];
        for _ in 0..100 {
            let id = fresh_id(9, &r);
            assert!(id != 0 && id != 9 && id != 5);
        }
    }

    #[test]
    fn a_retirement_survives_a_reload_and_stale_unchecked_positions_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut id = Identity::load(d, StartMode::default()).unwrap();
        id.unchecked.insert("a".into(), 40);
        id.save_unchecked(d).unwrap();
        assert_eq!(Identity::load(d, StartMode::default()).unwrap(), id);

        let old = id.current;
        id.retired.push(retired(old, &[("a", 40)]));
        id.current = fresh_id(old, &id.retired);
        id.unchecked.clear();
        id.save_retirement(d).unwrap();
        let back = Identity::load(d, StartMode::default()).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.producer_for("a", 39), (old, Some(40)));

        // high_water.json of another id is stale.
        std::fs::write(
            d.join("high_water.json"),
            format!(r#"{{"producer_id": {old}, "unchecked_from": {{"a": 1}}}}"#),
        )
        .unwrap();
        assert!(Identity::load(d, StartMode::default())
            .unwrap()
            .unchecked
            .is_empty());
    }

    #[test]
    fn an_interrupted_retirement_is_refused_on_a_normal_start_and_redone_by_retire() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let id = Identity::load(d, StartMode::default()).unwrap();
        // Crashed after writing the retired list, before the new id.
        write_json(&retired_path(d), &vec![retired(id.current, &[("a", 3)])]).unwrap();
        let e = Identity::load(d, StartMode::default()).unwrap_err();
        assert!(matches!(e, RegistryError::InterruptedRetire { .. }), "{e}");
        assert!(e.to_string().contains("--retire-producer"), "{e}");
        let retire = StartMode {
            retire: true,
            previous_id: None,
        };
        let again = Identity::load(d, retire).unwrap();
        assert_eq!(again.current, id.current);
        assert!(again.retired.is_empty());
    }

    #[test]
    fn a_lost_id_is_taken_from_the_operator_only_when_retiring() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("buffers/telemetry")).unwrap();
        let e = Identity::load(d, StartMode::default()).unwrap_err();
        assert!(matches!(e, RegistryError::LostProducerId { .. }), "{e}");
        assert!(e.to_string().contains("--previous-producer-id"), "{e}");
        let retire = StartMode {
            retire: true,
            previous_id: Some(77),
        };
        assert_eq!(Identity::load(d, retire).unwrap().current, 77);
        // Retiring without the lost id still refuses.
        let blind = StartMode {
            retire: true,
            previous_id: None,
        };
        assert!(Identity::load(d, blind).is_err());
        // A previous id that contradicts the file is refused.
        std::fs::write(d.join("producer_id"), "12").unwrap();
        let e = Identity::load(d, retire).unwrap_err();
        assert!(matches!(e, RegistryError::PreviousIdMismatch { .. }), "{e}");
    }
}
