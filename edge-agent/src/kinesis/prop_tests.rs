//! Decoders of network bytes never panic, whatever they are given: KPL
//! aggregates (with a valid MD5, so the protobuf decoder is reached), shard
//! iterators, SigV4 `Authorization` headers and `X-Amz-Date`s, sequence
//! numbers and shard ids, consumer ARNs.

use super::{kpl, seqno, sigv4, subscribe};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn kpl_decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut agg = kpl::MAGIC.to_vec();
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&strata_schema::hashkey::hash_key(&body).to_be_bytes());
        let _ = kpl::deaggregate(&agg);
    }

    #[test]
    fn text_decoders_never_panic(s in ".{0,300}") {
        let its = seqno::Iterators::new(&[1u8; 32]);
        let _ = its.open(&s, 0);
        let _ = sigv4::parse_authorization(&s);
        let _ = sigv4::parse_amz_date(&s);
        let _ = seqno::parse_canonical(&s, 0);
        let _ = seqno::parse_shard_id(&s);
        let _ = subscribe::parse_consumer_arn(&s);
    }

    #[test]
    fn iterators_of_any_position_round_trip(
        stream in "[a-zA-Z0-9_.-]{1,128}", shard in any::<u32>(), offset in any::<u64>(), now in 0i64..(1 << 50)
    ) {
        let its = seqno::Iterators::new(&[2u8; 32]);
        let pos = seqno::Position { stream, shard, offset };
        let it = its.issue(&pos, now);
        prop_assert!(it.len() <= 512);
        prop_assert_eq!(its.open(&it, now).unwrap(), pos);
    }
}
