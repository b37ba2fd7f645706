use super::core_view::{parse_tiered_line, prom_sum, strip_ansi, TieredLine};
use super::sensors::{fnv1a, Sensors};

#[test]
fn sensor_readings_look_real_and_are_seeded() {
    let mut a = Sensors::new(1, 1000);
    let mut b = Sensors::new(1, 1000);
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    let mut total = 0;
    for _ in 0..1000 {
        let da = a.next(1_795_440_000_123, &mut va);
        assert_eq!(da, b.next(1_795_440_000_123, &mut vb));
        assert_eq!(va, vb);
        let s = std::str::from_utf8(&va).unwrap();
        assert!(s.starts_with(&format!(r#"{{"device":"{}","seq":"#, a.key(da))));
        assert!(s.contains(r#","ts":1795440000123,"temp":"#) && s.ends_with("\"}"));
        total += va.len();
    }
    let avg = total / 1000;
    assert!((100..=150).contains(&avg), "{avg} B per reading");
}

#[test]
fn tiered_lines_parse_with_and_without_colour() {
    let plain = "2026-11-23T14:20:01.123456Z  INFO strata_core::tiering: tiered a segment \
                 key=archive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet \
                 records=250123 payload_bytes=30123456 object_bytes=3012345 ms=1234";
    let want = TieredLine {
        at_ms: 1_795_443_601_123,
        key: "archive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet"
            .into(),
        records: 250_123,
        payload_bytes: 30_123_456,
        object_bytes: 3_012_345,
        ms: 1234,
    };
    assert_eq!(parse_tiered_line(plain), Some(want.clone()));
    let coloured = "\u{1b}[2m2026-11-23T14:20:01.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                    \u{1b}[2mstrata_core::tiering\u{1b}[0m\u{1b}[2m:\u{1b}[0m tiered a segment \
                    \u{1b}[3mkey\u{1b}[0m\u{1b}[2m=\u{1b}[0marchive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet \
                    \u{1b}[3mrecords\u{1b}[0m\u{1b}[2m=\u{1b}[0m250123 \u{1b}[3mpayload_bytes\u{1b}[0m\u{1b}[2m=\u{1b}[0m30123456 \
                    \u{1b}[3mobject_bytes\u{1b}[0m\u{1b}[2m=\u{1b}[0m3012345 \u{1b}[3mms\u{1b}[0m\u{1b}[2m=\u{1b}[0m1234";
    assert_eq!(parse_tiered_line(&strip_ansi(coloured)), Some(want));
    assert_eq!(parse_tiered_line("2026-11-23T14:20:01Z INFO other"), None);
}

#[test]
fn prometheus_samples_are_summed_over_labels() {
    let m = "# TYPE strata_core_records_out_tier_total counter\n\
             strata_core_records_out_tier_total 1200\n\
             strata_core_tier_records_total{stream=\"a\"} 5\n\
             strata_core_tier_records_total{stream=\"b\"} 7\n\
             strata_core_tier_records_total_x 100\n";
    assert_eq!(
        prom_sum(m, "strata_core_records_out_tier_total"),
        Some(1200.0)
    );
    assert_eq!(prom_sum(m, "strata_core_tier_records_total"), Some(12.0));
    assert_eq!(prom_sum(m, "strata_core_tier_objects_total"), None);
}

#[test]
fn checksum_is_order_independent() {
    let vs: [&[u8]; 3] = [b"a", b"bc", b"def"];
    let fwd = vs.iter().fold(0u64, |s, v| s.wrapping_add(fnv1a(v)));
    let rev = vs.iter().rev().fold(0u64, |s, v| s.wrapping_add(fnv1a(v)));
    assert_eq!(fwd, rev);
    assert_ne!(fnv1a(b"ab"), fnv1a(b"ba"));
}
