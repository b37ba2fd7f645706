//! Kinesis-style partitioning: a partition key maps through MD5 to a 128-bit
//! hash key (big-endian); each shard owns a contiguous inclusive range, and the
//! ranges of a stream's open shards cover 0..=2^128-1 without overlap.
//! Hash keys are printed as decimal strings, as Kinesis does.

use md5::{Digest, Md5};

/// MD5 of the partition key as a big-endian u128.
pub fn hash_key(partition_key: &[u8]) -> u128 {
    let digest = Md5::digest(partition_key);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// An inclusive hash-key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    pub start: u128,
    pub end: u128,
}

impl HashRange {
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }
}

/// Splits the whole hash-key space evenly into `n` contiguous ranges.
pub fn even_ranges(n: u32) -> Vec<HashRange> {
    assert!(n > 0, "a stream has at least one shard");
    let n = u128::from(n);
    let step = u128::MAX / n;
    (0..n)
        .map(|i| HashRange {
            start: step * i,
            end: if i + 1 == n {
                u128::MAX
            } else {
                step * (i + 1) - 1
            },
        })
        .collect()
}

/// Index of the range containing `key`; `ranges` must be sorted and cover the
/// key space (as `even_ranges` returns).
pub fn route(ranges: &[HashRange], key: u128) -> usize {
    let i = ranges.partition_point(|r| r.end < key);
    assert!(i < ranges.len(), "hash ranges cover the whole key space");
    i
}

/// A hash key that is not a decimal 128-bit number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash key {text:?} is not a decimal 128-bit number: {source}")]
pub struct HashKeyError {
    pub text: String,
    pub source: std::num::ParseIntError,
}

/// Parses a decimal hash key.
pub fn parse_hash_key(s: &str) -> Result<u128, HashKeyError> {
    s.parse::<u128>().map_err(|source| HashKeyError {
        text: s.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_matches_kinesis() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(b""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn ranges_cover_space() {
        for n in [1u32, 2, 3, 7, 64] {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].end + 1, w[1].start);
            }
        }
    }

    /// Partition key -> MD5 hash key and owning shard, computed outside this
    /// crate with Python's hashlib (so a bug in `hash_key` or `route` cannot
    /// also be in the expectation):
    ///
    /// ```text
    /// python3 -c 'import hashlib; M=2**128-1; P=[0,2**127,2**127+2**126]
    /// for k in [b"", b"a", b"user-42", "clé-日本語-🚀".encode(), b"x"*1000, b"order-5", b"\xff\xfe"]:
    ///   h=int.from_bytes(hashlib.md5(k).digest(),"big")
    ///   print(h, hashlib.md5(k).hexdigest(), min(h//(M//4),3), min(h//(M//3),2), sum(h>=p for p in P)-1)'
    /// ```
    ///
    /// Columns: key, hash key (decimal, as Kinesis prints it), the same in
    /// hex (the MD5 digest), owner among 4 even shards, among 3 even shards,
    /// and in `SPLIT_UPPER_HALF`.
    struct Vector {
        key: &'static [u8],
        decimal: &'static str,
        hex: &'static str,
        of_4: usize,
        of_3: usize,
        of_split: usize,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            key: b"",
            decimal: "281949768489412648962353822266799178366",
            hex: "d41d8cd98f00b204e9800998ecf8427e",
            of_4: 3,
            of_3: 2,
            of_split: 2,
        },
        Vector {
            key: b"a",
            decimal: "16955237001963240173058271559858726497",
            hex: "0cc175b9c0f1b6a831c399e269772661",
            of_4: 0,
            of_3: 0,
            of_split: 0,
        },
        Vector {
            key: b"user-42",
            decimal: "157107139746365290205026809710278036035",
            hex: "7631bc07a1cc8fcd56e70fc6b2fb4a43",
            of_4: 1,
            of_3: 1,
            of_split: 0,
        },
        Vector {
            key: "clé-日本語-🚀".as_bytes(),
            decimal: "282711006159131633334907178720069486353",
            hex: "d4b028c3c11148c46dd5263626a10711",
            of_4: 3,
            of_3: 2,
            of_split: 2,
        },
        Vector {
            key: &[b'x'; 1000],
            decimal: "76457622481130798951775114194169121635",
            hex: "398533d48111e9f664b1f64cb10c4b63",
            of_4: 0,
            of_3: 0,
            of_split: 0,
        },
        Vector {
            key: b"order-5",
            decimal: "207322019416307282800281149729560211854",
            hex: "9bf8c4be8b3fc15c4623226aa6e2318e",
            of_4: 2,
            of_3: 1,
            of_split: 1,
        },
        Vector {
            key: b"\xff\xfe",
            decimal: "323928396544092132055233039276136372632",
            hex: "f3b25701fe362ec84616a93a45ce9998",
            of_4: 3,
            of_3: 2,
            of_split: 2,
        },
    ];

    /// 4 even shards, boundaries from
    /// `python3 -c 'M=2**128-1; s=M//4; print([(s*i, M if i==3 else s*(i+1)-1) for i in range(4)])'`
    /// (step floor((2^128-1)/4), the last shard takes the remainder).
    const EVEN_4: [(&str, &str); 4] = [
        ("0", "85070591730234615865843651857942052862"),
        (
            "85070591730234615865843651857942052863",
            "170141183460469231731687303715884105725",
        ),
        (
            "170141183460469231731687303715884105726",
            "255211775190703847597530955573826158588",
        ),
        (
            "255211775190703847597530955573826158589",
            "340282366920938463463374607431768211455",
        ),
    ];

    /// 3 even shards: the layout the AWS CLI documentation shows for a
    /// 3-shard Kinesis stream (`aws kinesis describe-stream` example).
    const EVEN_3: [(&str, &str); 3] = [
        ("0", "113427455640312821154458202477256070484"),
        (
            "113427455640312821154458202477256070485",
            "226854911280625642308916404954512140969",
        ),
        (
            "226854911280625642308916404954512140970",
            "340282366920938463463374607431768211455",
        ),
    ];

    /// An uneven layout, as after splitting the upper half of a 2-shard
    /// stream cut at 2^127: [0, 2^127-1], [2^127, 2^127+2^126-1],
    /// [2^127+2^126, 2^128-1].
    const SPLIT_UPPER_HALF: [(&str, &str); 3] = [
        ("0", "170141183460469231731687303715884105727"),
        (
            "170141183460469231731687303715884105728",
            "255211775190703847597530955573826158591",
        ),
        (
            "255211775190703847597530955573826158592",
            "340282366920938463463374607431768211455",
        ),
    ];

    fn ranges(bounds: &[(&str, &str)]) -> Vec<HashRange> {
        bounds
            .iter()
            .map(|(s, e)| HashRange {
                start: parse_hash_key(s).unwrap(),
                end: parse_hash_key(e).unwrap(),
            })
            .collect()
    }

    #[test]
    fn hash_keys_match_python_hashlib() {
        for v in VECTORS {
            let h = hash_key(v.key);
            assert_eq!(h.to_string(), v.decimal, "key {:?}", v.key);
            assert_eq!(format!("{h:032x}"), v.hex, "key {:?}", v.key);
        }
    }

    #[test]
    fn even_ranges_match_the_independent_boundaries() {
        assert_eq!(even_ranges(4), ranges(&EVEN_4));
        assert_eq!(even_ranges(3), ranges(&EVEN_3));
    }

    #[test]
    fn keys_route_to_the_shards_python_computed() {
        type Owner = fn(&Vector) -> usize;
        let layouts: [(&str, Vec<HashRange>, Owner); 3] = [
            ("4 even", ranges(&EVEN_4), |v: &Vector| v.of_4),
            ("3 even", ranges(&EVEN_3), |v: &Vector| v.of_3),
            ("split", ranges(&SPLIT_UPPER_HALF), |v: &Vector| v.of_split),
        ];
        for (name, layout, want) in layouts {
            for v in VECTORS {
                let got = route(&layout, hash_key(v.key));
                assert_eq!(got, want(v), "{name}: key {:?}", v.key);
            }
        }
    }

    proptest! {
        #[test]
        fn route_finds_owner(n in 1u32..200, key in any::<u128>()) {
            let r = even_ranges(n);
            let i = route(&r, key);
            prop_assert!(r[i].contains(key));
        }
    }
}
