//! Forwarding: one forwarder per stream drains the stream's buffer, in
//! order, to the core.
//!
//! Each round reads durable batches from the acknowledged position, splits
//! them by core shard ([`route`]), sends every shard its pieces (shards in
//! parallel, one request at a time per shard, in buffer order), and advances
//! the buffer only once every shard acknowledged. A failed round is retried
//! whole: the core drops what it already has by (producer id, position), so a
//! retry never writes a record twice. While the core is unreachable the
//! forwarder backs off (bounded) and the buffer keeps accepting. A shard
//! closed by a reshard refuses with `SHARD_CLOSED` and where this agent's
//! records in it end; the forwarder notes that, refreshes the shard map and
//! retries at once, and [`route`] sends the rest to the children.
//!
//! - [`route`]: which shard each record goes to (pure);
//! - [`plan`]: a round's requests, what the replies mean, when to retry (pure);
//! - [`error`]: why a round failed;
//! - `driver`: the async task that performs what `plan` decides.

mod driver;
pub mod error;
pub mod plan;
pub mod route;

pub use driver::run;
pub use error::RoundError;
