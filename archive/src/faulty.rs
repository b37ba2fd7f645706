//! An object store that fails on purpose, for tiering tests.
//!
//! [`FaultyStore`] wraps any store and, driven by a seed and a
//! [`FaultPlan`], makes calls fail the way a real object store does:
//!
//! - **errors**: the call fails with `object_store::Error::Generic` naming
//!   an injected fault, before it reaches the inner store (like a 500 or a
//!   503: [`crate::TierError::is_retryable`] treats it as retryable);
//! - **partial uploads** (puts and multipart uploads only): the inner store
//!   receives a truncated body and the call fails, like a connection cut
//!   mid-upload to a store that keeps what it got. A multipart upload
//!   forwards some of its parts (whole parts, in order), completes, and
//!   fails. This is harsher than S3 or the `file://` store, where a failed
//!   upload leaves no object at all: a caller that survives it survives
//!   them;
//! - **latency**: each call waits up to `latency_max` first.
//!
//! Every decision is one draw of a seeded generator ([`splitmix64`]), in call
//! order: the same seed and the same sequence of calls give the same faults
//! (concurrent callers interleave their draws as they are scheduled).
//! [`FaultyStore::counts`] says how many calls of each kind were made and
//! how many faults were injected; [`FaultyStore::faults`] lists them.
//! [`FaultyStore::set_plan`] changes the plan between calls (e.g. to heal
//! the store). Copies and renames pass through unfaulted.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Future, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// The kinds of calls a [`FaultPlan`] sets faults for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A single-request upload.
    Put,
    /// A multipart upload: its start, each part and its completion.
    Multipart,
    /// A read of an object or of ranges of it.
    Get,
    /// An object's metadata (a GET with `head` set).
    Head,
    List,
    Delete,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Put,
        Op::Multipart,
        Op::Get,
        Op::Head,
        Op::List,
        Op::Delete,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Put => "put",
            Op::Multipart => "multipart upload",
            Op::Get => "get",
            Op::Head => "head",
            Op::List => "list",
            Op::Delete => "delete",
        };
        f.write_str(s)
    }
}

/// The faults of one kind of call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpFaults {
    /// Probability (0 to 1) that a call fails before reaching the store.
    pub error: f64,
    /// Probability (0 to 1) that an upload reaches the store truncated and
    /// fails ([`Op::Put`] and [`Op::Multipart`] only; `error + partial` at
    /// most 1). For a multipart upload it is drawn at completion.
    pub partial: f64,
    /// Each call first waits a time drawn uniformly up to this.
    pub latency_max: Duration,
}

/// What to inject, per kind of call. `FaultPlan::default()` injects nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    pub put: OpFaults,
    pub multipart: OpFaults,
    pub get: OpFaults,
    pub head: OpFaults,
    pub list: OpFaults,
    pub delete: OpFaults,
}

impl FaultPlan {
    /// Every call fails with probability `error`; uploads are also cut with
    /// probability `partial`. No latency.
    pub fn uniform(error: f64, partial: f64) -> Self {
        let read = OpFaults {
            error,
            ..OpFaults::default()
        };
        let upload = OpFaults {
            error,
            partial,
            ..OpFaults::default()
        };
        Self {
            put: upload,
            multipart: upload,
            get: read,
            head: read,
            list: read,
            delete: read,
        }
    }

    pub fn of(&self, op: Op) -> &OpFaults {
        match op {
            Op::Put => &self.put,
            Op::Multipart => &self.multipart,
            Op::Get => &self.get,
            Op::Head => &self.head,
            Op::List => &self.list,
            Op::Delete => &self.delete,
        }
    }

    /// Checks that every probability is in [0, 1], that `error + partial`
    /// is at most 1, and that only uploads are cut.
    pub fn validate(&self) -> Result<(), FaultPlanError> {
        for op in Op::ALL {
            let f = self.of(op);
            for (what, p) in [("error", f.error), ("partial", f.partial)] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(FaultPlanError::Probability { op, what, value: p });
                }
            }
            if f.error + f.partial > 1.0 {
                return Err(FaultPlanError::Sum {
                    op,
                    error: f.error,
                    partial: f.partial,
                });
            }
            if f.partial > 0.0 && !matches!(op, Op::Put | Op::Multipart) {
                return Err(FaultPlanError::PartialNotUpload { op });
            }
        }
        Ok(())
    }
}

/// Why a [`FaultPlan`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultPlanError {
    #[error("{op}: {what} probability {value} is not between 0 and 1")]
    Probability {
        op: Op,
        what: &'static str,
        value: f64,
    },
    #[error("{op}: error ({error}) and partial ({partial}) probabilities add up to more than 1")]
    Sum { op: Op, error: f64, partial: f64 },
    #[error("{op}: only puts and multipart uploads can be partial")]
    PartialNotUpload { op: Op },
}

/// Calls made and faults injected for one kind of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Calls (a multipart upload counts its start, each part and its
    /// completion).
    pub calls: u64,
    pub errors: u64,
    pub partials: u64,
}

/// [`OpCounts`] for each [`Op`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    ops: [OpCounts; 6],
}

impl FaultCounts {
    pub fn of(&self, op: Op) -> OpCounts {
        self.ops[op.index()]
    }

    /// Faults injected, all kinds together.
    pub fn injected(&self) -> u64 {
        self.ops.iter().map(|c| c.errors + c.partials).sum()
    }
}

/// One injected fault, as [`FaultyStore::faults`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub op: Op,
    pub path: String,
    /// For a partial upload: bytes the inner store received, of how many.
    pub cut: Option<(u64, u64)>,
}

/// The error an injected fault returns (inside `object_store::Error::Generic`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected fault: {op} {path} {}", match .cut {
    Some((got, of)) => format!("cut after {got} of {of} bytes"),
    None => "failed".to_string(),
})]
pub struct InjectedFault {
    pub op: Op,
    pub path: String,
    pub cut: Option<(u64, u64)>,
}

impl From<InjectedFault> for object_store::Error {
    fn from(f: InjectedFault) -> Self {
        object_store::Error::Generic {
            store: "FaultyStore",
            source: Box::new(f),
        }
    }
}

/// One step of splitmix64 (Steele, Lea and Flood, 2014): advances `state`
/// by a constant and returns a well-mixed 64-bit value. Every seed, zero
/// included, gives a good sequence; not for cryptography.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Faults listed by [`FaultyStore::faults`] at most (counts go on).
const FAULTS_LISTED_MAX: usize = 100_000;

/// What one call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pass,
    Fail,
    /// Cut: the draw that picks how much gets through.
    Cut(u64),
}

struct State {
    rng: u64,
    plan: FaultPlan,
    counts: FaultCounts,
    faults: Vec<Injected>,
}

/// The generator, plan and counters, shared by the store and its uploads.
#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain numbers: go on.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draws the fate and latency of one `op` call on `path`.
    fn decide(&self, op: Op, path: &str, can_cut: bool) -> (Fate, Duration) {
        let mut s = self.lock();
        let f = *s.plan.of(op);
        let u = unit(splitmix64(&mut s.rng));
        let fate = if u < f.error {
            Fate::Fail
        } else if can_cut && u < f.error + f.partial {
            Fate::Cut(splitmix64(&mut s.rng))
        } else {
            Fate::Pass
        };
        let latency = if f.latency_max.is_zero() {
            Duration::ZERO
        } else {
            f.latency_max.mul_f64(unit(splitmix64(&mut s.rng)))
        };
        let c = &mut s.counts.ops[op.index()];
        c.calls += 1;
        if fate == Fate::Fail {
            c.errors += 1;
            s.record(op, path, None);
        }
        (fate, latency)
    }

    /// Counts a cut (the caller knows the sizes once it has decided).
    fn cut(&self, op: Op, path: &str, got: u64, of: u64) -> InjectedFault {
        let mut s = self.lock();
        s.counts.ops[op.index()].partials += 1;
        s.record(op, path, Some((got, of)));
        InjectedFault {
            op,
            path: path.to_string(),
            cut: Some((got, of)),
        }
    }
}

impl State {
    fn record(&mut self, op: Op, path: &str, cut: Option<(u64, u64)>) {
        if self.faults.len() < FAULTS_LISTED_MAX {
            self.faults.push(Injected {
                op,
                path: path.to_string(),
                cut,
            });
        }
    }
}

/// A draw as a number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn failed(op: Op, path: &str) -> object_store::Error {
    InjectedFault {
        op,
        path: path.to_string(),
        cut: None,
    }
    .into()
}

async fn wait(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// See the module documentation.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    shared: Shared,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl FaultyStore {
    /// `inner` with the faults of `plan`, drawn from `seed`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        seed: u64,
        plan: FaultPlan,
    ) -> Result<Self, FaultPlanError> {
        plan.validate()?;
        Ok(Self {
            inner,
            shared: Shared(Arc::new(Mutex::new(State {
                rng: seed,
                plan,
                counts: FaultCounts::default(),
                faults: Vec::new(),
            }))),
        })
    }

    /// The store the faults are injected in front of.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Replaces the plan for the calls that follow (the generator goes on).
    pub fn set_plan(&self, plan: FaultPlan) -> Result<(), FaultPlanError> {
        plan.validate()?;
        self.shared.lock().plan = plan;
        Ok(())
    }

    pub fn counts(&self) -> FaultCounts {
        self.shared.lock().counts
    }

    /// The faults injected so far, in order (the first 100,000).
    pub fn faults(&self) -> Vec<Injected> {
        self.shared.lock().faults.clone()
    }

    async fn get_faulted(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        let (fate, latency) = self.shared.decide(op, location.as_ref(), false);
        wait(latency).await;
        if fate == Fate::Fail {
            return Err(failed(op, location.as_ref()));
        }
        self.inner.get_opts(location, options).await
    }

    /// A listing that fails whole, or passes, after its latency.
    fn list_faulted(
        &self,
        prefix: Option<&Path>,
        list: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        let (fate, latency) = self.shared.decide(Op::List, &path, false);
        futures::stream::once(async move {
            wait(latency).await;
            match fate {
                Fate::Fail => {
                    futures::stream::once(async move { Err(failed(Op::List, &path)) }).boxed()
                }
                _ => list,
            }
        })
        .flatten()
        .boxed()
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

// object_store's traits are `#[async_trait]`; these are its expansions
// written out (the archive does not depend on async-trait), as in
// `crate::durable`.
impl ObjectStore for FaultyStore {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFut<'async_trait, PutResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let path = location.as_ref();
            let (fate, latency) = self.shared.decide(Op::Put, path, true);
            wait(latency).await;
            match fate {
                Fate::Pass => self.inner.put_opts(location, payload, opts).await,
                Fate::Fail => Err(failed(Op::Put, path)),
                Fate::Cut(draw) => {
                    let body = Bytes::from(payload);
                    let got = match body.len() {
                        0 => 0,
                        n => draw % n as u64,
                    };
                    let cut = self.shared.cut(Op::Put, path, got, body.len() as u64);
                    let truncated = body.slice(..got as usize);
                    self.inner
                        .put_opts(location, truncated.into(), opts)
                        .await?;
                    Err(cut.into())
                }
            }
        })
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> BoxFut<'async_trait, Box<dyn MultipartUpload>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let (fate, latency) = self.shared.decide(Op::Multipart, location.as_ref(), false);
            wait(latency).await;
            if fate == Fate::Fail {
                return Err(failed(Op::Multipart, location.as_ref()));
            }
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            let upload: Box<dyn MultipartUpload> = Box::new(FaultyUpload {
                inner,
                parts: Vec::new(),
                location: location.clone(),
                shared: self.shared.clone(),
            });
            Ok(upload)
        })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxFut<'async_trait, GetResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.get_faulted(location, options))
    }

    fn get_ranges<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        ranges: &'life2 [Range<u64>],
    ) -> BoxFut<'async_trait, Vec<Bytes>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let (fate, latency) = self.shared.decide(Op::Get, location.as_ref(), false);
            wait(latency).await;
            if fate == Fate::Fail {
                return Err(failed(Op::Get, location.as_ref()));
            }
            self.inner.get_ranges(location, ranges).await
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // A failed deletion never reaches the inner store: it passes through
        // it as an error item, which the stores return as they got it.
        let shared = self.shared.clone();
        let faulted = locations
            .then(move |location| {
                let shared = shared.clone();
                async move {
                    let location = location?;
                    let (fate, latency) = shared.decide(Op::Delete, location.as_ref(), false);
                    wait(latency).await;
                    match fate {
                        Fate::Fail => Err(failed(Op::Delete, location.as_ref())),
                        _ => Ok(location),
                    }
                }
            })
            .boxed();
        self.inner.delete_stream(faulted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_faulted(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_faulted(prefix, self.inner.list_with_offset(prefix, offset))
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxFut<'async_trait, ListResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let path = prefix.map(|p| p.to_string()).unwrap_or_default();
            let (fate, latency) = self.shared.decide(Op::List, &path, false);
            wait(latency).await;
            if fate == Fate::Fail {
                return Err(failed(Op::List, &path));
            }
            self.inner.list_with_delimiter(prefix).await
        })
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.copy_opts(from, to, options)
    }

    fn rename_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: RenameOptions,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.rename_opts(from, to, options)
    }
}

/// A multipart upload through a [`FaultyStore`]. Parts are held until
/// `complete`, which forwards them in order (all of them, or, when cut,
/// fewer) and completes the inner upload.
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    parts: Vec<PutPayload>,
    location: Path,
    shared: Shared,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyUpload")
            .field("location", &self.location)
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let path = self.location.to_string();
        let (fate, latency) = self.shared.decide(Op::Multipart, &path, false);
        if fate == Fate::Pass {
            self.parts.push(data);
        }
        Box::pin(async move {
            wait(latency).await;
            match fate {
                Fate::Fail => Err(failed(Op::Multipart, &path)),
                _ => Ok(()),
            }
        })
    }

    fn complete<'life0, 'async_trait>(&'life0 mut self) -> BoxFut<'async_trait, PutResult>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let path = self.location.to_string();
            let (fate, latency) = self.shared.decide(Op::Multipart, &path, true);
            wait(latency).await;
            let parts = std::mem::take(&mut self.parts);
            let keep = match fate {
                Fate::Fail => return Err(failed(Op::Multipart, &path)),
                Fate::Pass => parts.len(),
                Fate::Cut(_) if parts.is_empty() => 0,
                Fate::Cut(draw) => (draw % parts.len() as u64) as usize,
            };
            let total: usize = parts.iter().map(PutPayload::content_length).sum();
            let sent: usize = parts[..keep].iter().map(PutPayload::content_length).sum();
            for part in parts.into_iter().take(keep) {
                self.inner.put_part(part).await?;
            }
            let put = self.inner.complete().await?;
            match fate {
                Fate::Cut(_) => Err(self
                    .shared
                    .cut(Op::Multipart, &path, sent as u64, total as u64)
                    .into()),
                _ => Ok(put),
            }
        })
    }

    fn abort<'life0, 'async_trait>(&'life0 mut self) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.parts.clear();
        self.inner.abort()
    }
}

#[cfg(test)]
#[path = "faulty_tests.rs"]
mod tests;
