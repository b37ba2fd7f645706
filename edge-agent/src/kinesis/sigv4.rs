//! AWS Signature Version 4 verification (pure: no I/O, no clock; the
//! caller passes `now`).
//!
//! The server recomputes what the client signed: the canonical request
//! (method, URI path, sorted query, the signed headers lower-cased with
//! their values trimmed, the SHA-256 of the body), the string to sign
//! (algorithm, `x-amz-date`, credential scope, hash of the canonical
//! request), the signing key (HMAC chain over date, region, service,
//! `aws4_request` from `"AWS4" + secret`), and compares the HMAC with the
//! `Signature=` of the `Authorization` header in constant time
//! (`ring::hmac::verify`). A request older or newer than
//! [`CLOCK_SKEW_MAX_SECS`] is refused, as AWS does.
//!
//! Tested against vectors of AWS's published SigV4 test suite (region
//! `us-east-1`, service `service`) and a request signed by botocore.

use ring::{digest, hmac};

/// Largest difference between `x-amz-date` and the server's clock.
pub const CLOCK_SKEW_MAX_SECS: i64 = 15 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature is not accepted. The Kinesis error type of
/// each is [`SigError::kinesis_type`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the request has no Authorization header (AWS Signature Version 4 is required)")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("the request has no valid X-Amz-Date header (yyyymmddThhmmssZ): {0:?}")]
    BadDate(String),
    #[error("signature expired: X-Amz-Date {date} is more than 15 minutes from the server's time")]
    Skew { date: String },
    #[error("the security token included in the request is invalid: unknown access key id {0:?}")]
    UnknownKey(String),
    #[error("the request signature we calculated does not match the signature you provided; check your AWS secret access key and signing method")]
    Mismatch,
}

impl SigError {
    /// The `__type` Kinesis answers with.
    pub fn kinesis_type(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::UnknownKey(_) => "UnrecognizedClientException",
            SigError::Skew { .. } => "InvalidSignatureException",
            SigError::Malformed(_) | SigError::BadDate(_) | SigError::Mismatch => {
                "InvalidSignatureException"
            }
        }
    }
}

/// The parts of a request a signature covers. Header names may have any
/// case; a name given twice has its values joined with `,` (as HTTP does).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (already percent-encoded by the client).
    pub path: &'a str,
    /// The raw query string (without `?`), maybe empty.
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `yyyymmdd` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case names, in the order given (sorted by the client).
    pub signed_headers: Vec<String>,
    pub signature: Vec<u8>,
}

/// Parses `AWS4-HMAC-SHA256 Credential=ID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let bad = |what: &str| SigError::Malformed(what.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| bad("the algorithm must be AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| bad("no Credential="))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [id, date, region, service, terminal] = scope[..] else {
        return Err(bad(
            "Credential= must be ID/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if terminal != "aws4_request" || id.is_empty() {
        return Err(bad(
            "Credential= must be ID/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| bad("no SignedHeaders="))?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(bad("SignedHeaders must include host"));
    }
    let signature = hex_decode(signature.ok_or_else(|| bad("no Signature="))?)
        .ok_or_else(|| bad("Signature= must be 64 hexadecimal characters"))?;
    Ok(Authorization {
        access_key_id: id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature,
    })
}

/// Seconds since the epoch of an `x-amz-date` (`20150830T123600Z`).
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The value of header `name` (any case), values of repeated headers
/// joined with `,`.
fn header(headers: &[(&str, &str)], name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| canonical_value(v))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Trimmed, with runs of spaces collapsed to one.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 3986 encoding AWS uses: unreserved characters kept, the rest `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (a malformed escape is kept as is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical query: each name and value decoded then re-encoded,
/// sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The canonical request of `req` over `signed_headers`.
pub fn canonical_request(req: &Request<'_>, signed_headers: &[String]) -> String {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let mut out = format!(
        "{}\n{}\n{}\n",
        req.method,
        uri_encode(&percent_decode(path), true),
        canonical_query(req.query)
    );
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&header(req.headers, name).unwrap_or_default());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex(digest::digest(&digest::SHA256, req.body).as_ref()));
    out
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, auth: &Authorization, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        auth.service,
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    )
}

/// The signing key of a secret for a credential scope.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k = step(format!("AWS4{secret}").as_bytes(), date);
    let k = step(k.as_ref(), region);
    let k = step(k.as_ref(), service);
    let k = step(k.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

/// The hex signature a client with `secret` computes (for tests and tools).
pub fn sign(req: &Request<'_>, auth: &Authorization, amz_date: &str, secret: &str) -> String {
    let sts = string_to_sign(
        amz_date,
        auth,
        &canonical_request(req, &auth.signed_headers),
    );
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    hex(hmac::sign(&key, sts.as_bytes()).as_ref())
}

/// Verifies `req`: its `Authorization` header, its `X-Amz-Date` within
/// [`CLOCK_SKEW_MAX_SECS`] of `now_secs`, and the signature with the secret
/// `secret_of` gives for the key id. Returns the authorization (whose key
/// id the caller maps to a principal) and what `secret_of` returned.
pub fn verify<T>(
    req: &Request<'_>,
    now_secs: i64,
    secret_of: impl FnOnce(&str) -> Option<(String, T)>,
) -> Result<(Authorization, T), SigError> {
    let auth =
        parse_authorization(&header(req.headers, "authorization").ok_or(SigError::Missing)?)?;
    let amz_date = header(req.headers, "x-amz-date").unwrap_or_default();
    let at = parse_amz_date(&amz_date).ok_or_else(|| SigError::BadDate(amz_date.clone()))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigError::Malformed(format!(
            "the credential scope's date {} is not the day of X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    if (now_secs - at).abs() > CLOCK_SKEW_MAX_SECS {
        return Err(SigError::Skew { date: amz_date });
    }
    let (secret, found) = secret_of(&auth.access_key_id)
        .ok_or_else(|| SigError::UnknownKey(auth.access_key_id.clone()))?;
    let sts = string_to_sign(
        &amz_date,
        &auth,
        &canonical_request(req, &auth.signed_headers),
    );
    let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
    hmac::verify(&key, sts.as_bytes(), &auth.signature).map_err(|_| SigError::Mismatch)?;
    Ok((auth, found))
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
