//! Command-line definitions and dispatch.

mod access;
mod aws_credentials;
mod cluster;
mod consume;
mod dev;
mod produce;
mod query;
mod stream;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use strata_client::cluster::Cluster;
use strata_client::Client;

pub const DEFAULT_EDGE: &str = "127.0.0.1:7400";
pub const DEFAULT_CORE: &str = "127.0.0.1:7500";

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Strata: edge-to-core streaming with durable buffers, Raft and object-storage tiering"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Connection options shared by commands that talk to a server.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// CA certificate (PEM) to trust; default ./strata-data/tls/ca.pem when it exists.
    #[arg(long, env = "STRATA_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) to present; default: the dev admin identity
    /// (admin.pem) beside the CA when it exists.
    #[arg(long, env = "STRATA_CERT", global = true, requires = "cert_key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert (not `--key`: that is a record's
    /// partition key in `strata produce`).
    #[arg(long, env = "STRATA_KEY", global = true, requires = "cert")]
    pub cert_key: Option<PathBuf>,
}

impl TlsArgs {
    fn resolve(&self) -> Result<(PathBuf, Option<strata_runtime::identity::Identity>)> {
        let ca = strata_runtime::tls::resolve_ca(self.ca.as_deref())?;
        let id = strata_runtime::identity::Identity::resolve(
            self.cert.as_deref(),
            self.cert_key.as_deref(),
            &ca,
        )?;
        Ok((ca, id))
    }

    pub fn client(&self, addr: SocketAddr) -> Result<Client> {
        let (ca, id) = self.resolve()?;
        Ok(Client::with_identity(addr, &ca, id.as_ref())?)
    }

    pub fn cluster(&self, seeds: &Seeds) -> Result<Cluster> {
        let (ca, id) = self.resolve()?;
        Ok(Cluster::with_identity(seeds.0.clone(), &ca, id.as_ref())?)
    }
}

/// Core node addresses, comma-separated (any node of a cluster will do).
#[derive(Debug, Clone)]
pub struct Seeds(pub Vec<SocketAddr>);

pub fn parse_seeds(s: &str) -> Result<Seeds, strata_client::cluster::AddrListError> {
    strata_client::cluster::parse_addrs(s).map(Seeds)
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a local pipeline in the foreground: a single-node core and an edge agent.
    Dev(dev::DevArgs),
    /// Create, list and describe streams.
    Stream {
        #[command(subcommand)]
        cmd: stream::StreamCmd,
        #[command(flatten)]
        tls: TlsArgs,
        /// Core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, global = true, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Inspect the core cluster.
    Cluster {
        #[command(subcommand)]
        cmd: cluster::ClusterCmd,
        #[command(flatten)]
        tls: TlsArgs,
        /// Core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, global = true, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Produce records through an edge agent.
    Produce(produce::ProduceArgs),
    /// Read records from the core.
    Consume(consume::ConsumeArgs),
    /// Run SQL over streams' Parquet archives (and hot tails).
    Query(query::QueryArgs),
    /// Print the principal a server sees for this client.
    Whoami {
        #[command(flatten)]
        tls: TlsArgs,
        /// Server address (a core node, or an edge agent with --edge).
        #[arg(long, default_value = DEFAULT_CORE, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Access rules: who may produce, consume, describe, create, alter, administer.
    Acl {
        #[command(subcommand)]
        cmd: access::AclCmd,
        #[command(flatten)]
        tls: TlsArgs,
        /// Core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, global = true, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Client certificates from the dev CA (development and tests), and
    /// AWS access keys of principals (the edge's Kinesis API).
    Identity {
        #[command(subcommand)]
        cmd: access::IdentityCmd,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Dev(a) => dev::run(a).await,
        Cmd::Stream { cmd, tls, core } => stream::run(cmd, &tls, &core).await,
        Cmd::Cluster { cmd, tls, core } => cluster::run(cmd, &tls, &core).await,
        Cmd::Produce(a) => produce::run(a).await,
        Cmd::Consume(a) => consume::run(a).await,
        Cmd::Query(a) => query::run(a).await,
        Cmd::Whoami { tls, core } => access::whoami(&tls, &core).await,
        Cmd::Acl { cmd, tls, core } => access::acl(cmd, &tls, &core).await,
        Cmd::Identity { cmd } => access::identity(cmd).await,
    }
}

#[cfg(test)]
mod definition_tests {
    #[test]
    fn every_command_is_well_formed() {
        // Duplicate flag names (e.g. a global --key beside produce's --key)
        // panic here, not in front of a user.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
