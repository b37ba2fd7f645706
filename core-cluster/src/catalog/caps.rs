//! Caps on what the catalog may hold: streams, consumer groups per stream,
//! members per group. A client holding a valid certificate must not be able
//! to grow the replicated catalog (which every metadata replica keeps in
//! memory and snapshots) without bound.
//!
//! Checked on the metadata leader before it proposes (`api::ops`), from the
//! catalog as applied: two creations racing on the leader may overshoot a
//! cap by the number racing, never more. Requests that do not add anything
//! (an existing stream, group or member) are never refused by a cap.

use super::Catalog;

/// The caps (config `streams_max`, `groups_per_stream_max`,
/// `members_per_group_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub streams_max: usize,
    pub groups_per_stream_max: usize,
    pub members_per_group_max: usize,
}

/// Which cap a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("the cluster already has {max} streams (streams_max); delete one or raise streams_max in the core config")]
    Streams { max: usize },
    #[error("stream {stream:?} already has {max} consumer groups (groups_per_stream_max); raise it in the core config")]
    Groups { stream: String, max: usize },
    #[error("consumer group {group:?} of stream {stream:?} already has {max} members (members_per_group_max); raise it in the core config")]
    Members {
        stream: String,
        group: String,
        max: usize,
    },
}

impl Caps {
    /// Whether stream `name` may be created.
    pub fn check_stream(&self, c: &Catalog, name: &str) -> Result<(), CapError> {
        if c.streams.contains_key(name) || c.streams.len() < self.streams_max {
            Ok(())
        } else {
            Err(CapError::Streams {
                max: self.streams_max,
            })
        }
    }

    /// Whether `member` may heartbeat into `group` of `stream` (joining the
    /// group, or creating it, if it is new). Leaving is never refused.
    pub fn check_member(
        &self,
        c: &Catalog,
        stream: &str,
        group: &str,
        member: &str,
        leave: bool,
    ) -> Result<(), CapError> {
        if leave {
            return Ok(());
        }
        let groups = c.groups.get(stream);
        match groups.and_then(|g| g.get(group)) {
            None => {
                let n = groups.map_or(0, |g| g.len());
                if n >= self.groups_per_stream_max {
                    return Err(CapError::Groups {
                        stream: stream.to_string(),
                        max: self.groups_per_stream_max,
                    });
                }
                // A new group starts with this one member.
                if self.members_per_group_max == 0 {
                    return Err(self.members_error(stream, group));
                }
                Ok(())
            }
            Some(g) if g.members.contains_key(member) => Ok(()),
            Some(g) if g.members.len() < self.members_per_group_max => Ok(()),
            Some(_) => Err(self.members_error(stream, group)),
        }
    }

    fn members_error(&self, stream: &str, group: &str) -> CapError {
        CapError::Members {
            stream: stream.to_string(),
            group: group.to_string(),
            max: self.members_per_group_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::groups::Group;
    use crate::catalog::StreamMeta;

    fn caps(s: usize, g: usize, m: usize) -> Caps {
        Caps {
            streams_max: s,
            groups_per_stream_max: g,
            members_per_group_max: m,
        }
    }

    fn catalog(streams: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for s in streams {
            let meta: StreamMeta = serde_json::from_value(serde_json::json!({
                "name": s, "replication": 1, "created_ms": 0, "shards": []
            }))
            .unwrap();
            c.streams.insert(s.to_string(), meta);
        }
        c
    }

    fn with_group(c: &mut Catalog, stream: &str, group: &str, members: &[&str]) {
        let mut g = Group::default();
        for m in members {
            g.members.insert(m.to_string(), i64::MAX);
        }
        c.groups
            .entry(stream.to_string())
            .or_default()
            .insert(group.to_string(), g);
    }

    #[test]
    fn streams_up_to_the_cap_and_existing_names_always() {
        let c = catalog(&["a", "b"]);
        assert_eq!(caps(3, 1, 1).check_stream(&c, "c"), Ok(()));
        assert_eq!(
            caps(2, 1, 1).check_stream(&c, "c"),
            Err(CapError::Streams { max: 2 })
        );
        // Creating an existing stream is AlreadyExists, not a cap error.
        assert_eq!(caps(2, 1, 1).check_stream(&c, "a"), Ok(()));
        assert_eq!(
            caps(0, 1, 1).check_stream(&Catalog::default(), "a"),
            Err(CapError::Streams { max: 0 })
        );
    }

    #[test]
    fn groups_per_stream_are_capped_per_stream() {
        let mut c = catalog(&["s", "t"]);
        with_group(&mut c, "s", "g1", &["m"]);
        with_group(&mut c, "s", "g2", &["m"]);
        let cap = caps(10, 2, 10);
        assert_eq!(
            cap.check_member(&c, "s", "g3", "m", false),
            Err(CapError::Groups {
                stream: "s".into(),
                max: 2
            })
        );
        // Existing groups and other streams are not affected.
        assert_eq!(cap.check_member(&c, "s", "g1", "new", false), Ok(()));
        assert_eq!(cap.check_member(&c, "t", "g3", "m", false), Ok(()));
        assert_eq!(
            caps(10, 3, 10).check_member(&c, "s", "g3", "m", false),
            Ok(())
        );
    }

    #[test]
    fn members_per_group_are_capped_but_members_may_stay_and_leave() {
        let mut c = catalog(&["s"]);
        with_group(&mut c, "s", "g", &["a", "b"]);
        let cap = caps(10, 10, 2);
        let full = Err(CapError::Members {
            stream: "s".into(),
            group: "g".into(),
            max: 2,
        });
        assert_eq!(cap.check_member(&c, "s", "g", "c", false), full);
        assert_eq!(cap.check_member(&c, "s", "g", "a", false), Ok(()));
        assert_eq!(cap.check_member(&c, "s", "g", "c", true), Ok(()));
        assert_eq!(
            caps(10, 10, 3).check_member(&c, "s", "g", "c", false),
            Ok(())
        );
        assert_eq!(
            caps(10, 10, 0).check_member(&c, "s", "new", "a", false),
            Err(CapError::Members {
                stream: "s".into(),
                group: "new".into(),
                max: 0
            })
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let e = CapError::Members {
            stream: "s".into(),
            group: "g".into(),
            max: 5,
        }
        .to_string();
        assert!(
            e.contains("members_per_group_max") && e.contains("\"g\""),
            "{e}"
        );
        assert!(CapError::Streams { max: 1 }
            .to_string()
            .contains("streams_max"));
    }
}
