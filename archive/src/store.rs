//! Opening the object store named by a URL, and uploading objects.
//!
//! - `file:///abs/dir` or `/abs/dir`: a local directory (created if
//!   missing), the embedded default. Writes land atomically (temp file, then
//!   rename) and are fsynced, file and directories, before they return
//!   ([`crate::durable`]).
//! - `s3://bucket/prefix`: S3 or an S3-compatible server. Everything else
//!   comes from the standard `AWS_*` environment (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//!   `AWS_ENDPOINT_URL`, …), as for any AWS tool. The region defaults to
//!   `us-east-1`. With a custom endpoint, requests are path-style (what
//!   SeaweedFS, MinIO and friends expect). Plain `http://` endpoints are only
//!   accepted on loopback, so credentials never cross a network in clear.
//!
//! The returned [`Path`] is the prefix to put keys under (see
//! [`crate::keys`]); for a local directory the directory itself is the root.
//! [`open_encrypted`] adds server-side encryption of an S3 store
//! ([`crate::sse`]).

use crate::durable::{sync_path, DurableLocal};
use crate::sse::{S3Encryption, SseError};
use crate::TierError;
use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::net::IpAddr;
use std::sync::Arc;
use url::{Host, Url};

/// Region used when the environment names none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Opens the store named by `url`; S3 settings come from the environment.
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), TierError> {
    open_with(url, AmazonS3Builder::from_env())
}

/// [`open`], asking S3 to encrypt every object written with `sse`; only an
/// `s3://` store takes a setting.
pub fn open_encrypted(
    url: &str,
    sse: &S3Encryption,
) -> Result<(Arc<dyn ObjectStore>, Path), TierError> {
    open_encrypted_with(url, sse, AmazonS3Builder::from_env())
}

/// [`open_encrypted`] with the other S3 settings taken from `s3`.
pub fn open_encrypted_with(
    url: &str,
    sse: &S3Encryption,
    s3: AmazonS3Builder,
) -> Result<(Arc<dyn ObjectStore>, Path), TierError> {
    let bad = |reason: UrlError| TierError::Url {
        url: url.to_string(),
        reason,
    };
    sse.validate().map_err(|e| bad(UrlError::Sse(e)))?;
    if sse.is_set() && !url.starts_with("s3://") {
        return Err(bad(UrlError::SseNeedsS3));
    }
    open_with(url, sse.apply(s3))
}

/// [`open`] with the S3 settings taken from `s3` instead of the environment.
pub fn open_with(
    url: &str,
    s3: AmazonS3Builder,
) -> Result<(Arc<dyn ObjectStore>, Path), TierError> {
    let bad = |reason: UrlError| TierError::Url {
        url: url.to_string(),
        reason,
    };
    if url.starts_with('/') {
        return open_dir(std::path::Path::new(url)).map_err(bad);
    }
    let parsed = Url::parse(url).map_err(|e| bad(UrlError::Parse(e)))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(UrlError::QueryOrFragment));
    }
    match parsed.scheme() {
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| bad(UrlError::NotALocalPath))?;
            open_dir(&dir).map_err(bad)
        }
        "s3" => open_s3(&parsed, s3).map_err(bad),
        other => Err(bad(UrlError::Scheme(other.to_owned()))),
    }
}

/// Why a store URL cannot be used (the reason of [`TierError::Url`]).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0}; expected file:///absolute/dir, /absolute/dir or s3://bucket/prefix")]
    Parse(url::ParseError),
    #[error("query strings and fragments are not supported")]
    QueryOrFragment,
    #[error("a file URL needs an absolute local path and no host")]
    NotALocalPath,
    #[error("unsupported scheme {0:?}; expected file or s3")]
    Scheme(String),
    #[error("creating {}: {source}", .dir.display())]
    CreateDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The object store refused the settings (local prefix or S3 builder).
    #[error("{0}")]
    Settings(object_store::Error),
    #[error("the URL names no bucket (s3://bucket/prefix)")]
    NoBucket,
    #[error("credentials and ports do not belong in the URL: use AWS_* environment variables")]
    CredentialsInUrl,
    #[error("prefix {prefix:?}: {source}")]
    Prefix {
        prefix: String,
        source: object_store::path::Error,
    },
    #[error("endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        source: url::ParseError,
    },
    #[error("endpoint {endpoint:?} uses plain http to a host that is not loopback; use https")]
    PlainHttpNotLoopback { endpoint: String },
    #[error("endpoint {endpoint:?} has scheme {scheme:?}; expected https (or http on loopback)")]
    EndpointScheme { endpoint: String, scheme: String },
    #[error("server-side encryption: {0}")]
    Sse(SseError),
    #[error("server-side encryption applies to s3:// stores only")]
    SseNeedsS3,
}

fn open_dir(dir: &std::path::Path) -> Result<(Arc<dyn ObjectStore>, Path), UrlError> {
    let store =
        DurableLocal::open(dir, Arc::new(sync_path)).map_err(|source| UrlError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    Ok((Arc::new(store), Path::default()))
}

fn open_s3(url: &Url, s3: AmazonS3Builder) -> Result<(Arc<dyn ObjectStore>, Path), UrlError> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or(UrlError::NoBucket)?;
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(UrlError::CredentialsInUrl);
    }
    let prefix = url.path().trim_matches('/');
    let prefix = Path::parse(prefix).map_err(|source| UrlError::Prefix {
        prefix: prefix.to_owned(),
        source,
    })?;
    // Few, quick retries inside one request: tiering retries whole uploads
    // with its own backoff, and a stuck request must not hold up the other
    // shards for object_store's default three minutes.
    let retry = object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
    };
    let mut s3 = s3.with_bucket_name(bucket).with_retry(retry);
    if s3.get_config_value(&AmazonS3ConfigKey::Region).is_none() {
        s3 = s3.with_region(DEFAULT_REGION);
    }
    let endpoint = s3
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| s3.get_config_value(&AmazonS3ConfigKey::Endpoint));
    if let Some(endpoint) = endpoint {
        let allow_http = endpoint_allows_http(&endpoint)?;
        s3 = s3
            .with_virtual_hosted_style_request(false)
            .with_allow_http(allow_http);
    }
    let store = s3.build().map_err(UrlError::Settings)?;
    Ok((Arc::new(store), prefix))
}

/// Whether a custom S3 endpoint may use plain HTTP: only on loopback.
fn endpoint_allows_http(endpoint: &str) -> Result<bool, UrlError> {
    let url = Url::parse(endpoint).map_err(|source| UrlError::Endpoint {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match url.host() {
                Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(true)
            } else {
                Err(UrlError::PlainHttpNotLoopback {
                    endpoint: endpoint.to_owned(),
                })
            }
        }
        other => Err(UrlError::EndpointScheme {
            endpoint: endpoint.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

/// Objects up to this size go up in one PUT; larger ones as a multipart
/// upload of [`PART_BYTES`] parts sent concurrently.
const SINGLE_PUT_BYTES_MAX: usize = 10 << 20;
const PART_BYTES: usize = 8 << 20;

/// Uploads `bytes` to `path`. The object appears whole or not at all (a PUT
/// or a completed multipart upload). A failed multipart upload is aborted
/// when the failure is at completion; parts left by a failure earlier only
/// cost storage until the bucket's lifecycle rule for incomplete uploads
/// removes them.
pub async fn put_object(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    bytes: Bytes,
) -> Result<(), TierError> {
    let err = |source| TierError::ObjectStore {
        op: "put",
        path: path.to_string(),
        source,
    };
    if bytes.len() <= SINGLE_PUT_BYTES_MAX {
        store.put(path, bytes.into()).await.map_err(err)?;
        return Ok(());
    }
    let upload = store.put_multipart(path).await.map_err(err)?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    w.put(bytes);
    w.finish().await.map_err(err)?;
    Ok(())
}
