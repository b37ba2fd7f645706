//! The segment log that backs every Raft group's log storage.
