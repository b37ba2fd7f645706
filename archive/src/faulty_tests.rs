//! The failure-injecting store itself: transparent without faults,
//! deterministic by seed, partial uploads leave truncated objects.

use super::*;
use crate::store::put_object;
use crate::TierError;
use object_store::memory::InMemory;
use object_store::ObjectStoreExt;

fn store(seed: u64, plan: FaultPlan) -> (Arc<InMemory>, FaultyStore) {
    let inner = Arc::new(InMemory::new());
    let faulty = FaultyStore::new(inner.clone(), seed, plan).unwrap();
    (inner, faulty)
}

fn body(n: usize) -> Bytes {
    (0..n)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Puts, reads, heads, lists and deletes `n` objects, ignoring failures;
/// returns which calls failed, in order.
async fn workload(s: &FaultyStore, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = Path::from(format!("d/o{i}"));
        let r = s.put(&p, body(100 + i).into()).await.map(|_| ());
        out.push(format!("put {i} {}", r.is_ok()));
        let r = s.get(&p).await.map(|_| ());
        out.push(format!("get {i} {}", r.is_ok()));
        let r = s.head(&p).await.map(|_| ());
        out.push(format!("head {i} {}", r.is_ok()));
        let r = s.list(None).collect::<Vec<_>>().await;
        out.push(format!("list {i} {}", r.iter().all(|m| m.is_ok())));
        if i % 3 == 0 {
            let r = s.delete(&p).await;
            out.push(format!("delete {i} {}", r.is_ok()));
        }
    }
    out
}

#[tokio::test]
async fn without_faults_the_store_is_transparent() {
    let (inner, s) = store(7, FaultPlan::default());
    let outcomes = workload(&s, 20).await;
    assert!(outcomes.iter().all(|o| o.ends_with("true")), "{outcomes:?}");
    let c = s.counts();
    assert_eq!(c.injected(), 0);
    assert_eq!(c.of(Op::Put).calls, 20);
    assert_eq!(c.of(Op::Head).calls, 20);
    // What went through is in the inner store, unchanged.
    let p = Path::from("d/o5");
    assert_eq!(
        inner.get(&p).await.unwrap().bytes().await.unwrap(),
        body(105)
    );
    assert!(matches!(
        inner.head(&Path::from("d/o3")).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let plan = FaultPlan::uniform(0.3, 0.2);
    let (_, a) = store(42, plan);
    let (_, b) = store(42, plan);
    let (_, c) = store(43, plan);
    let (ra, rb, rc) = (
        workload(&a, 40).await,
        workload(&b, 40).await,
        workload(&c, 40).await,
    );
    assert_eq!(ra, rb);
    assert_eq!(a.faults(), b.faults());
    assert_eq!(a.counts(), b.counts());
    assert_ne!(ra, rc, "another seed, other faults");
    // Every kind of call got faults, near the planned rates.
    let n = a.counts();
    for op in [Op::Put, Op::Get, Op::Head, Op::List, Op::Delete] {
        assert!(n.of(op).errors > 0, "{op}: {n:?}");
    }
    assert!(n.of(Op::Put).partials > 0, "{n:?}");
    let failed = ra.iter().filter(|o| o.ends_with("false")).count() as f64;
    let rate = failed / ra.len() as f64;
    assert!((0.2..0.5).contains(&rate), "failure rate {rate}");
}

#[tokio::test]
async fn a_partial_put_leaves_a_truncated_object_and_fails() {
    let plan = FaultPlan {
        put: OpFaults {
            partial: 1.0,
            ..OpFaults::default()
        },
        ..FaultPlan::default()
    };
    let (inner, s) = store(1, plan);
    let p = Path::from("d/cut");
    let e = s.put(&p, body(1000).into()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("injected fault: put d/cut cut after"),
        "{e}"
    );
    let kept = inner.get(&p).await.unwrap().bytes().await.unwrap();
    assert!(kept.len() < 1000);
    assert_eq!(kept, body(1000).slice(..kept.len()), "a prefix");
    let f = s.faults();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].cut, Some((kept.len() as u64, 1000)));
    assert_eq!(s.counts().of(Op::Put).partials, 1);
    // Tiering retries such a failure.
    let e = TierError::ObjectStore {
        op: "put",
        path: p.to_string(),
        source: e,
    };
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_cut_multipart_upload_leaves_some_parts_and_fails() {
    // put_object sends objects over 10 MiB as 8 MiB parts.
    let plan = FaultPlan {
        multipart: OpFaults {
            partial: 1.0,
            ..OpFaults::default()
        },
        ..FaultPlan::default()
    };
    let (inner, s) = store(3, plan);
    let s: Arc<dyn ObjectStore> = Arc::new(s);
    let p = Path::from("d/big");
    let big = body(20 << 20);
    let e = put_object(&s, &p, big.clone()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .contains("injected fault: multipart upload d/big cut after"),
        "{e}"
    );
    let kept = inner.get(&p).await.unwrap().bytes().await.unwrap();
    assert!(
        kept.len() < big.len() && kept.len() % (8 << 20) == 0,
        "{}",
        kept.len()
    );
    assert_eq!(kept, big.slice(..kept.len()));

    // Without faults the same upload goes through whole.
    let (inner, s) = store(3, FaultPlan::default());
    let s: Arc<dyn ObjectStore> = Arc::new(s);
    put_object(&s, &p, big.clone()).await.unwrap();
    assert_eq!(inner.get(&p).await.unwrap().bytes().await.unwrap(), big);
}

#[tokio::test]
async fn injected_errors_never_reach_the_inner_store() {
    let (inner, s) = store(9, FaultPlan::uniform(1.0, 0.0));
    let p = Path::from("d/x");
    assert!(s.put(&p, body(10).into()).await.is_err());
    assert!(inner.head(&p).await.is_err(), "nothing written");
    inner.put(&p, body(10).into()).await.unwrap();
    assert!(s.get(&p).await.is_err());
    assert!(s.delete(&p).await.is_err());
    assert!(inner.head(&p).await.is_ok(), "not deleted");
    let listed: Vec<_> = s.list(None).collect().await;
    assert!(listed.len() == 1 && listed[0].is_err());
    assert!(s.list_with_delimiter(None).await.is_err());
    // Healed, the same store passes everything through.
    s.set_plan(FaultPlan::default()).unwrap();
    assert_eq!(s.get(&p).await.unwrap().bytes().await.unwrap(), body(10));
    s.delete(&p).await.unwrap();
    assert!(inner.head(&p).await.is_err());
    let c = s.counts();
    assert_eq!((c.of(Op::Delete).errors, c.of(Op::Delete).calls), (1, 2));
}

#[tokio::test]
async fn latency_is_added_up_to_the_plan() {
    let plan = FaultPlan {
        get: OpFaults {
            latency_max: Duration::from_millis(20),
            ..OpFaults::default()
        },
        ..FaultPlan::default()
    };
    let (inner, s) = store(5, plan);
    let p = Path::from("d/x");
    inner.put(&p, body(10).into()).await.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..10 {
        s.get(&p).await.unwrap();
    }
    let took = t.elapsed();
    // Ten draws uniform in [0, 20 ms): some wait, and not more than the cap.
    assert!(took >= Duration::from_millis(5), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn bad_plans_are_refused_naming_the_call() {
    let mut plan = FaultPlan::uniform(0.5, 0.6);
    let e = FaultyStore::new(Arc::new(InMemory::new()), 0, plan).unwrap_err();
    assert_eq!(
        e.to_string(),
        "put: error (0.5) and partial (0.6) probabilities add up to more than 1"
    );
    plan = FaultPlan::default();
    plan.get.partial = 0.1;
    let e = FaultyStore::new(Arc::new(InMemory::new()), 0, plan).unwrap_err();
    assert_eq!(
        e.to_string(),
        "get: only puts and multipart uploads can be partial"
    );
    plan = FaultPlan::default();
    plan.delete.error = 1.5;
    assert!(matches!(
        plan.validate(),
        Err(FaultPlanError::Probability { op: Op::Delete, .. })
    ));
}

#[test]
fn splitmix64_gives_known_values_and_moves_from_zero() {
    // Reference values of splitmix64 seeded with 0.
    let mut s = 0;
    assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    let draws: Vec<f64> = (0..1000).map(|_| unit(splitmix64(&mut s))).collect();
    assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
    let mean = draws.iter().sum::<f64>() / 1000.0;
    assert!((0.45..0.55).contains(&mean), "{mean}");
}
