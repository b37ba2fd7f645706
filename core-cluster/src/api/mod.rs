//! What clients reach: the QUIC request handler (`server`), the operations
//! it calls on the node (`ops`: streams, reshards, membership, producers,
//! groups, appends), who may send which request (`access`), and the views it
//! answers with (`views`).

pub mod access;
pub mod ops;
pub mod server;
pub mod views;
