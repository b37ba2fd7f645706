//! PutRecord(s) planning: limits, hash keys, KPL expansion.

use super::*;
use strata_schema::batch;

fn entry(data: &[u8], pk: &str, ehk: Option<&str>) -> PutEntry {
    PutEntry {
        data: Some(STANDARD.encode(data)),
        partition_key: Some(pk.to_string()),
        explicit_hash_key: ehk.map(str::to_string),
    }
}

fn four() -> Vec<(u32, HashRange)> {
    hashkey::even_ranges(4)
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i as u32, r))
        .collect()
}

#[test]
fn records_keep_their_keys_order_and_shards() {
    let ranges = four();
    let entries: Vec<PutEntry> = (0..10)
        .map(|i| entry(format!("v{i}").as_bytes(), &format!("k{i}"), None))
        .collect();
    let p = plan(&entries, &ranges, 1234).unwrap();
    assert_eq!(p.records, 10);
    let b = batch::open(&p.batch).unwrap();
    for (i, r) in b.records().iter().enumerate() {
        assert_eq!(r.key(), Some(format!("k{i}").as_str()));
        assert_eq!(r.value().unwrap().bytes(), format!("v{i}").as_bytes());
        assert_eq!(r.timestamp_ms(), 1234);
        let want = hashkey::route(
            &hashkey::even_ranges(4),
            hashkey::hash_key(format!("k{i}").as_bytes()),
        );
        assert_eq!(p.results[i], (want as u32, i as u32));
    }
}

#[test]
fn an_explicit_hash_key_routes_to_its_shard_and_keeps_the_partition_key() {
    let ranges = four();
    let top = u128::MAX - 5;
    let p = plan(
        &[
            entry(b"x", "pk", Some(&top.to_string())),
            entry(b"y", "pk", Some("0")),
        ],
        &ranges,
        0,
    )
    .unwrap();
    assert_eq!(p.results, vec![(3, 0), (0, 1)]);
    let b = batch::open(&p.batch).unwrap();
    let r = b.records().get(0);
    let key = r.key().unwrap();
    assert!(
        ranges[3].1.contains(hashkey::hash_key(key.as_bytes())),
        "{key}"
    );
    let h = r.headers().unwrap().get(0);
    assert_eq!(
        (h.key(), h.value().unwrap().bytes()),
        (PARTITION_KEY_HEADER, &b"pk"[..])
    );
    // Deterministic: the same explicit hash key, the same routing key.
    assert_eq!(routing_key(top, ranges[3].1).as_deref(), Some(key));
}

#[test]
fn kinesis_limits_refuse_the_whole_request() {
    let ranges = four();
    let big = vec![0u8; RECORD_BYTES_MAX];
    let e = plan(&[entry(&big, "k", None)], &ranges, 0).unwrap_err();
    assert_eq!(e.kind, "InvalidArgumentException");
    assert!(e.message.contains("1 MiB"), "{e}");
    let many: Vec<PutEntry> = (0..501).map(|_| entry(b"x", "k", None)).collect();
    assert!(plan(&many, &ranges, 0).unwrap_err().message.contains("500"));
    let heavy: Vec<PutEntry> = (0..6)
        .map(|_| entry(&vec![1u8; 1000 * 1024], "k", None))
        .collect();
    assert!(plan(&heavy, &ranges, 0)
        .unwrap_err()
        .message
        .contains("5 MiB"));
    for (e, want) in [
        (entry(b"x", "", None), "PartitionKey"),
        (entry(b"x", &"k".repeat(257), None), "PartitionKey"),
        (entry(b"x", "k", Some("-1")), "ExplicitHashKey"),
        (
            PutEntry {
                data: Some("%%%".into()),
                partition_key: Some("k".into()),
                explicit_hash_key: None,
            },
            "base64",
        ),
        (
            PutEntry {
                data: Some("eA==".into()),
                partition_key: None,
                explicit_hash_key: None,
            },
            "required",
        ),
    ] {
        let err = plan(&[entry(b"ok", "k", None), e], &ranges, 0).unwrap_err();
        assert!(
            err.message.contains(want) && err.message.contains("Records[1]"),
            "{err}"
        );
    }
    assert!(plan(&[], &ranges, 0).is_err());
}

#[test]
fn a_kpl_aggregate_becomes_its_user_records() {
    // aws-kinesis-agg 1.2.3's output for user records (a, "1"), (b, "2", ehk 0).
    let mut body = Vec::new();
    for (f, v) in [(1u8, &b"a"[..]), (1, b"b"), (2, b"0")] {
        body.extend_from_slice(&[f << 3 | 2, v.len() as u8]);
        body.extend_from_slice(v);
    }
    for rec in [
        &[0x08, 0x00, 0x1a, 0x01, b'1'][..],
        &[0x08, 0x01, 0x10, 0x00, 0x1a, 0x01, b'2'],
    ] {
        body.extend_from_slice(&[3 << 3 | 2, rec.len() as u8]);
        body.extend_from_slice(rec);
    }
    let mut agg = kpl::MAGIC.to_vec();
    agg.extend_from_slice(&body);
    agg.extend_from_slice(&hashkey::hash_key(&body).to_be_bytes());
    let p = plan(
        &[entry(b"plain", "p", None), entry(&agg, "agg", None)],
        &four(),
        0,
    )
    .unwrap();
    assert_eq!(p.records, 3);
    assert_eq!(p.results[1].1, 1);
    let b = batch::open(&p.batch).unwrap();
    let keys: Vec<_> = b
        .records()
        .iter()
        .map(|r| r.key().unwrap().to_string())
        .collect();
    assert_eq!(keys[..2], ["p".to_string(), "a".to_string()]);
    assert!(keys[2].starts_with("0/"));
    let mut bad = agg.clone();
    bad[6] ^= 1;
    let e = plan(&[entry(&bad, "agg", None)], &four(), 0).unwrap_err();
    assert!(e.message.contains("KPL"), "{e}");
}
