//! SigV4 against AWS's published test-suite vectors and a botocore request.

use super::*;

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";
/// 2015-08-30T12:36:00Z.
const SUITE_NOW: i64 = 1_440_938_160;

struct Vector {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    extra: &'static [(&'static str, &'static str)],
    signed: &'static str,
    signature: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        path: "/",
        query: "",
        extra: &[],
        signed: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        path: "/",
        query: "Param2=value2&Param1=value1",
        extra: &[],
        signed: "host;x-amz-date",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Vector {
        name: "post-vanilla",
        method: "POST",
        path: "/",
        query: "",
        extra: &[],
        signed: "host;x-amz-date",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "get-unreserved",
        method: "GET",
        path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        query: "",
        extra: &[],
        signed: "host;x-amz-date",
        signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    Vector {
        name: "get-utf8",
        method: "GET",
        path: "/%E1%88%B4",
        query: "",
        extra: &[],
        signed: "host;x-amz-date",
        signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    Vector {
        name: "get-header-key-duplicate",
        method: "GET",
        path: "/",
        query: "",
        extra: &[
            ("My-Header1", "value2"),
            ("My-Header1", "value2"),
            ("My-Header1", "value1"),
        ],
        signed: "host;my-header1;x-amz-date",
        signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
];

fn authorization(id: &str, scope: &str, signed: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

fn suite_headers(v: &Vector, authz: &str) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Host", "example.amazonaws.com".to_string()),
        ("X-Amz-Date", SUITE_DATE.to_string()),
    ];
    h.extend(v.extra.iter().map(|(n, v)| (*n, v.to_string())));
    h.push(("Authorization", authz.to_string()));
    h
}

fn check(
    v: &Vector,
    signature: &str,
    now: i64,
    key: Option<&str>,
) -> Result<(Authorization, ()), SigError> {
    let authz = authorization(
        "AKIDEXAMPLE",
        "20150830/us-east-1/service/aws4_request",
        v.signed,
        signature,
    );
    let owned = suite_headers(v, &authz);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let req = Request {
        method: v.method,
        path: v.path,
        query: v.query,
        headers: &headers,
        body: b"",
    };
    verify(&req, now, |id| {
        assert_eq!(id, "AKIDEXAMPLE");
        key.map(|k| (k.to_string(), ()))
    })
}

#[test]
fn the_published_test_suite_vectors_verify() {
    for v in VECTORS {
        let (auth, ()) = check(v, v.signature, SUITE_NOW, Some(SUITE_SECRET))
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE", "{}", v.name);
        assert_eq!(auth.service, "service");
    }
}

#[test]
fn get_vanilla_intermediate_steps_match_the_suite() {
    let v = &VECTORS[0];
    let authz = authorization(
        "AKIDEXAMPLE",
        "20150830/us-east-1/service/aws4_request",
        v.signed,
        v.signature,
    );
    let owned = suite_headers(v, &authz);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let req = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &headers,
        body: b"",
    };
    let auth = parse_authorization(&authz).unwrap();
    let creq = canonical_request(&req, &auth.signed_headers);
    assert_eq!(
        creq,
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        string_to_sign(SUITE_DATE, &auth, &creq),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    assert_eq!(sign(&req, &auth, SUITE_DATE, SUITE_SECRET), v.signature);
}

#[test]
fn a_wrong_secret_an_unknown_key_or_a_stale_date_is_refused() {
    let v = &VECTORS[2];
    assert_eq!(
        check(v, v.signature, SUITE_NOW, Some("another secret")).unwrap_err(),
        SigError::Mismatch
    );
    let e = check(v, v.signature, SUITE_NOW, None).unwrap_err();
    assert_eq!(e.kinesis_type(), "UnrecognizedClientException");
    let e = check(
        v,
        v.signature,
        SUITE_NOW + CLOCK_SKEW_MAX_SECS + 1,
        Some(SUITE_SECRET),
    )
    .unwrap_err();
    assert!(matches!(e, SigError::Skew { .. }), "{e}");
    assert!(check(
        v,
        v.signature,
        SUITE_NOW - CLOCK_SKEW_MAX_SECS,
        Some(SUITE_SECRET)
    )
    .is_ok());
    let mut flipped = v.signature.to_string();
    flipped.replace_range(0..1, "6");
    assert_eq!(
        check(v, &flipped, SUITE_NOW, Some(SUITE_SECRET)).unwrap_err(),
        SigError::Mismatch
    );
    assert!(matches!(
        check(v, "abc", SUITE_NOW, Some(SUITE_SECRET)).unwrap_err(),
        SigError::Malformed(_)
    ));
}

/// A PutRecord signed by botocore 1.44 (boto3 1.44.5) for the edge.
#[test]
fn a_request_signed_by_botocore_verifies() {
    let body = br#"{"StreamName": "sensors", "Data": "aGVsbG8=", "PartitionKey": "pk-1"}"#;
    let headers = [
        ("Host", "127.0.0.1:7443"),
        ("X-Amz-Target", "Kinesis_20131202.PutRecord"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("User-Agent", "Boto3/1.44.5"),
        ("X-Amz-Date", "20261205T041925Z"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=SKTESTKEY00000000001/20261205/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=01113ed9ef05a4b3fb7802f1b8c713a45157e0cb867efa0af455d19f697f49d9"),
    ];
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let now = parse_amz_date("20261205T042000Z").unwrap();
    let (auth, principal) = verify(&req, now, |id| {
        (id == "SKTESTKEY00000000001").then(|| (SUITE_SECRET.to_string(), "admin"))
    })
    .unwrap();
    assert_eq!((auth.service.as_str(), principal), ("kinesis", "admin"));
    let mut tampered = *body;
    tampered[tampered.len() - 3] = b'2';
    let req = Request {
        body: &tampered,
        ..req
    };
    assert_eq!(
        verify(&req, now, |_| Some((SUITE_SECRET.to_string(), ()))).unwrap_err(),
        SigError::Mismatch
    );
}

#[test]
fn amz_dates_parse_to_epoch_seconds() {
    assert_eq!(parse_amz_date(SUITE_DATE), Some(SUITE_NOW));
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
    for bad in [
        "",
        "20150830T123600",
        "2015083XT123600Z",
        "20151330T123600Z",
        "20150830 123600Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}

#[test]
fn malformed_headers_name_what_is_wrong() {
    for (h, want) in [
        ("AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request", "algorithm"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "Credential"),
        ("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00", "aws4_request"),
        ("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=x-amz-date, Signature=00", "host"),
    ] {
        let e = parse_authorization(h).unwrap_err().to_string();
        assert!(e.contains(want), "{h}: {e}");
    }
}
