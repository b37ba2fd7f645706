//! `strata whoami`, `strata acl add | list | remove`,
//! `strata identity issue | issue-node | revoke` (client and node
//! certificates from the dev CA) and the AWS access keys of principals
//! (`identity issue NAME --aws-key`, `identity aws-keys`,
//! `identity revoke-aws-key`).

use super::aws_credentials;
use super::{parse_seeds, Seeds, TlsArgs, DEFAULT_CORE};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use strata_client::access;
use strata_protocol::acl::{parse_operations, Acl, Rule};

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Allow a principal (glob) some operations on streams (glob).
    Add {
        /// Principal name or glob, e.g. `sensor-*`.
        #[arg(long)]
        principal: String,
        /// Comma-separated: produce, consume, describe, create, alter, admin,
        /// verify (read AWS key secrets: edge agents), or all.
        #[arg(long)]
        allow: String,
        /// Stream name or glob; `*` is every stream (and the cluster).
        #[arg(long)]
        stream: String,
        /// With produce only: keys must start with this; `${principal}` is
        /// replaced by the caller's name (quote it in the shell).
        #[arg(long)]
        key_prefix: Option<String>,
    },
    /// Show the rules in force.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule by id (see `strata acl list`).
    Remove { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Issue a client certificate for principal NAME from the dev CA:
    /// writes NAME.pem and NAME-key.pem (0600). Production uses its own CA
    /// (docs/security.md).
    ///
    /// With --aws-key: instead, create an AWS access key for principal NAME
    /// in the cluster (needs `admin`), for the edge's Kinesis API, and
    /// print it (the secret is shown only this once).
    Issue {
        name: String,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Directory of the dev CA (ca.pem, ca-key.pem).
        #[arg(long, default_value = "strata-data/tls")]
        ca_dir: PathBuf,
        /// Create an AWS access key for NAME instead of a certificate.
        #[arg(long)]
        aws_key: bool,
        /// With --aws-key: also write the key into this AWS
        /// shared-credentials file (created or merged, mode 0600).
        #[arg(long, value_name = "PATH", requires = "aws_key")]
        credentials_file: Option<PathBuf>,
        /// The profile to write in --credentials-file.
        #[arg(long, default_value = "default", requires = "credentials_file")]
        profile: String,
        #[command(flatten)]
        tls: TlsArgs,
        /// With --aws-key: core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// List the AWS access keys (ids and principals; needs `describe`).
    AwsKeys {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tls: TlsArgs,
        /// Core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Delete an AWS access key (needs `admin`): requests signed with it
    /// are refused once the edge agents synced (within seconds).
    RevokeAwsKey {
        /// The access key id (see `strata identity aws-keys`).
        id: String,
        #[command(flatten)]
        tls: TlsArgs,
        /// Core node addresses (QUIC), comma-separated.
        #[arg(long, default_value = DEFAULT_CORE, value_parser = parse_seeds)]
        core: Seeds,
    },
    /// Issue the peer certificate of core node ID from the dev CA: writes
    /// peer-ID.pem and peer-ID-key.pem (0600), SAN URI `strata:node/ID`.
    /// Set them as the node's `peer_cert`/`peer_key`: its peer port then
    /// serves only cluster members, by the id their certificates name.
    IssueNode {
        id: u64,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Directory of the dev CA (ca.pem, ca-key.pem).
        #[arg(long, default_value = "strata-data/tls")]
        ca_dir: PathBuf,
    },
    /// Revoke a certificate: add it to a CRL file signed by the dev CA
    /// (daemons with `client_crl` pointing at it re-read it at once).
    Revoke {
        /// The certificate (PEM) to revoke.
        cert: PathBuf,
        /// The CRL file to create or extend.
        #[arg(long, default_value = "strata-data/tls/revoked.pem")]
        crl: PathBuf,
        #[arg(long, default_value = "strata-data/tls")]
        ca_dir: PathBuf,
    },
}

pub async fn whoami(tls: &TlsArgs, core: &Seeds) -> Result<()> {
    let addr = *core.0.first().context("no server address given")?;
    let c = tls.client(addr)?;
    let w = access::whoami(&c).await?;
    println!(
        "{}{}",
        w.principal,
        if w.superuser { " (superuser)" } else { "" }
    );
    Ok(())
}

fn print_rules(acl: &Acl) {
    println!(
        "{:>4}  {:<20} {:<36} {:<20} KEY PREFIX",
        "ID", "PRINCIPAL", "OPERATIONS", "STREAM"
    );
    for r in &acl.rules {
        let ops: Vec<&str> = r.operations.iter().map(|o| o.name()).collect();
        println!(
            "{:>4}  {:<20} {:<36} {:<20} {}",
            r.id,
            r.principal,
            ops.join(","),
            r.stream,
            r.key_prefix.as_deref().unwrap_or("-")
        );
    }
}

pub async fn acl(cmd: AclCmd, tls: &TlsArgs, core: &Seeds) -> Result<()> {
    let cluster = tls.cluster(core)?;
    match cmd {
        AclCmd::Add {
            principal,
            allow,
            stream,
            key_prefix,
        } => {
            let rule = Rule {
                id: 0,
                principal,
                operations: parse_operations(&allow)?,
                stream,
                key_prefix,
            };
            rule.validate()?;
            let rule = &rule;
            let (acl, id) = cluster
                .any(|c| async move { access::acl_change(&c, Some(rule), 0).await })
                .await?;
            println!("added rule {id}");
            print_rules(&acl);
        }
        AclCmd::Remove { id } => {
            let (acl, _) = cluster
                .any(|c| async move { access::acl_change(&c, None, id).await })
                .await?;
            println!("removed rule {id}");
            print_rules(&acl);
        }
        AclCmd::List { json } => {
            let acl = cluster
                .any(|c| async move { access::acl_list(&c).await })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&acl)?);
            } else {
                print_rules(&acl);
            }
        }
    }
    Ok(())
}

fn print_keys(keys: &strata_protocol::aws_key::AwsKeys) {
    println!("{:<22} PRINCIPAL", "ACCESS KEY ID");
    for k in &keys.keys {
        println!("{:<22} {}", k.access_key_id, k.principal);
    }
}

async fn issue_aws_key(
    name: &str,
    credentials_file: Option<&std::path::Path>,
    profile: &str,
    tls: &TlsArgs,
    core: &Seeds,
) -> Result<()> {
    let cluster = tls.cluster(core)?;
    let key = cluster
        .any(|c| async move { access::aws_key_issue(&c, name).await })
        .await?;
    cluster.close().await;
    println!(
        "issued an AWS access key for principal {name} (the secret is not shown again):\n\
         aws_access_key_id = {}\naws_secret_access_key = {}",
        key.access_key_id, key.secret_access_key
    );
    if let Some(path) = credentials_file {
        aws_credentials::write_profile(path, profile, &key.access_key_id, &key.secret_access_key)?;
        println!(
            "wrote profile {profile} in {} (AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={profile})",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

pub async fn identity(cmd: IdentityCmd) -> Result<()> {
    match cmd {
        IdentityCmd::Issue {
            name,
            aws_key: true,
            credentials_file,
            profile,
            tls,
            core,
            ..
        } => issue_aws_key(&name, credentials_file.as_deref(), &profile, &tls, &core).await?,
        IdentityCmd::AwsKeys { json, tls, core } => {
            let cluster = tls.cluster(&core)?;
            let keys = cluster
                .any(|c| async move { access::aws_key_list(&c, false).await })
                .await?;
            cluster.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_keys(&keys);
            }
        }
        IdentityCmd::RevokeAwsKey { id, tls, core } => {
            strata_protocol::aws_key::check_access_key_id(&id)?;
            let cluster = tls.cluster(&core)?;
            let id = &id;
            let keys = cluster
                .any(|c| async move { access::aws_key_revoke(&c, id).await })
                .await?;
            cluster.close().await;
            println!("revoked AWS access key {id}");
            print_keys(&keys);
        }
        IdentityCmd::Issue {
            name, out, ca_dir, ..
        } => {
            let id = strata_runtime::tls::issue_identity(&name, &ca_dir, &out)?;
            println!(
                "issued principal {name}: {} and {} (use --cert/--cert-key or STRATA_CERT/STRATA_KEY)",
                id.cert.display(),
                id.key.display()
            );
        }
        IdentityCmd::IssueNode { id, out, ca_dir } => {
            let files = strata_runtime::tls::issue_node_identity(id, &ca_dir, &out)?;
            println!(
                "issued node {id}: {} and {} (the node's peer_cert and peer_key)",
                files.cert.display(),
                files.key.display()
            );
        }
        IdentityCmd::Revoke { cert, crl, ca_dir } => {
            let n = strata_runtime::tls::revoke_identity(&cert, &ca_dir, &crl)?;
            println!(
                "revoked {}: {} now lists {n} certificate(s)",
                cert.display(),
                crl.display()
            );
        }
    }
    Ok(())
}
