//! The HTTPS server of the Kinesis API: TLS (the edge's own certificate,
//! TLS 1.2 and 1.3, no client certificates: callers sign requests with
//! AWS keys instead), HTTP/1.1 on hyper, and the limits of the QUIC port:
//! at most `connections_max` connections, `connections_per_address_max`
//! from one IP address, and a request (headers and body) must arrive within
//! `request_read_timeout`. A body is bounded before it is read
//! ([`BODY_BYTES_MAX`]: 5 MiB of records in base64 plus JSON overhead).
//!
//! Each request: `POST /`, `X-Amz-Target: Kinesis_20131202.<Operation>`, a
//! JSON body (`application/x-amz-json-1.1`; CBOR is refused with a message
//! saying how to turn it off), an AWS Signature V4 over it ([`super::sigv4`])
//! whose access key names the Strata principal the request acts as.

use super::error::KinesisError;
use super::ops::Kinesis;
use super::sigv4;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_runtime::server::{AddressSlots, Caller, ServeLimits};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Largest request body: 5 MiB of records is 6.7 MiB in base64, plus the
/// JSON around 500 records.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Finds the secret and principal of an access key id.
pub trait KeyLookup: Send + Sync + 'static {
    fn secret_and_principal(&self, access_key_id: &str) -> Option<(String, String)>;
}

impl KeyLookup for crate::registry::aws_keys::AwsKeyStore {
    fn secret_and_principal(&self, access_key_id: &str) -> Option<(String, String)> {
        self.lookup(access_key_id)
            .map(|k| (k.secret_access_key, k.principal))
    }
}

/// How requests are authenticated.
pub enum Auth {
    /// Signatures verified against these keys.
    Keys(Arc<dyn KeyLookup>),
    /// `client_auth = "off"`: signatures not checked, no access rules (a
    /// loopback test setup, as on the QUIC port).
    Off,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kinesis endpoint: {0}")]
    Tls(#[from] strata_runtime::tls::TlsError),
    #[error("kinesis endpoint: certificate {cert} does not go with its key: {source}")]
    KeyMismatch {
        cert: std::path::PathBuf,
        source: rustls::Error,
    },
    #[error("kinesis endpoint: cannot listen on {addr} (kinesis_addr): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The TLS config of the endpoint: the edge's certificate and key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    strata_runtime::tls::install_crypto_provider();
    let certs = strata_runtime::tls::load_certs(cert)?;
    let key = strata_runtime::tls::load_key(key)?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| StartError::KeyMismatch {
            cert: cert.to_path_buf(),
            source,
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

struct Shared {
    kinesis: Kinesis,
    auth: Auth,
    read_timeout: Duration,
}

/// Serves until `shutdown` turns true, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    kinesis: Kinesis,
    auth: Auth,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let shared = Arc::new(Shared {
        kinesis,
        auth,
        read_timeout: limits.request_read_timeout,
    });
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let per_address = AddressSlots::new(limits.connections_per_address_max);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "kinesis endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => break,
        };
        let (Ok(permit), Some(slot)) = (
            connections.clone().try_acquire_owned(),
            per_address.take(peer.ip()),
        ) else {
            tracing::debug!(%peer, "kinesis endpoint: connection limit reached; closing");
            continue;
        };
        let (acceptor, shared, stop) = (acceptor.clone(), shared.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _held = (permit, slot);
            connection(acceptor, tcp, peer, shared, stop).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(shared.read_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return tracing::debug!(%peer, error = %e, "kinesis endpoint: TLS handshake failed")
        }
        Err(_) => return tracing::debug!(%peer, "kinesis endpoint: TLS handshake timed out"),
    };
    let read_timeout = shared.read_timeout;
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(request(&shared, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "kinesis endpoint: connection ended");
            }
        }
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What an operation answers: one JSON document, or (`SubscribeToShard`)
/// event-stream messages as they come.
enum Reply {
    Json(serde_json::Value),
    Events(tokio::sync::mpsc::Receiver<Bytes>),
}

fn response(status: u16, content_type: &str, body: Body) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header(
            "x-amzn-requestid",
            format!("{:032x}", rand::random::<u128>()),
        )
        .body(body)
        .expect("a valid response")
}

fn json(status: u16, body: Vec<u8>) -> Response<Body> {
    response(
        status,
        "application/x-amz-json-1.1",
        Full::new(Bytes::from(body)).boxed_unsync(),
    )
}

async fn request(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    match handle(shared, peer, req).await {
        Ok(Reply::Json(v)) => json(200, serde_json::to_vec(&v).expect("JSON values encode")),
        Ok(Reply::Events(rx)) => {
            let frames = futures::stream::unfold(rx, |mut rx| async move {
                let m = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(m)), rx))
            });
            response(
                200,
                "application/vnd.amazon.eventstream",
                StreamBody::new(frames).boxed_unsync(),
            )
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "kinesis request refused");
            json(e.status(), e.body())
        }
    }
}

async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, KinesisError> {
    let (parts, body) = req.into_parts();
    if parts.method != hyper::Method::POST {
        return Err(KinesisError::invalid(format!(
            "the Kinesis API takes POST requests, not {}",
            parts.method
        )));
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let op = header("x-amz-target")
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .ok_or_else(|| {
            KinesisError::new(
                "UnknownOperationException",
                format!("the X-Amz-Target header must be {TARGET_PREFIX}<Operation>"),
            )
        })?
        .to_string();
    if header("content-type").is_some_and(|c| c.contains("cbor")) {
        return Err(KinesisError::serialization(
            "CBOR bodies are not supported: disable CBOR in the client (AWS_CBOR_DISABLE=true, or -Dcom.amazonaws.sdk.disableCbor)",
        ));
    }
    let body = match tokio::time::timeout(
        shared.read_timeout,
        Limited::new(body, BODY_BYTES_MAX).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Err(KinesisError::invalid(format!(
                "request body refused (at most {BODY_BYTES_MAX} bytes): {e}"
            )))
        }
        Err(_) => {
            return Err(KinesisError::invalid(format!(
                "the request body did not arrive within {} ms",
                shared.read_timeout.as_millis()
            )))
        }
    };
    let caller = match &shared.auth {
        Auth::Off => Caller {
            addr: peer,
            principal: None,
        },
        Auth::Keys(keys) => {
            let headers: Vec<(&str, &str)> = parts
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
                .collect();
            let signed = sigv4::Request {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: &headers,
                body: &body,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let (_, principal) = sigv4::verify(&signed, now, |id| keys.secret_and_principal(id))?;
            Caller {
                addr: peer,
                principal: Some(Arc::from(principal.as_str())),
            }
        }
    };
    if op == "SubscribeToShard" {
        return Ok(Reply::Events(
            shared.kinesis.subscribe_to_shard(&body, &caller).await?,
        ));
    }
    Ok(Reply::Json(
        shared.kinesis.handle(&op, &body, &caller).await?,
    ))
}
