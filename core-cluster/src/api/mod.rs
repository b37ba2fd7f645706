//! What clients reach: the QUIC request handler (`server`), the operations
//! it calls on the node (`ops`: streams, reshards, membership, producers,
//! groups, appends), who may send which request (`access`), the views it
//! answers with (`views`), producers' high-water marks (`high_water`), and
//! AWS access keys and stream deletion (`admin`).

pub mod access;
pub mod admin;
pub mod high_water;
pub mod ops;
pub mod server;
pub mod views;
