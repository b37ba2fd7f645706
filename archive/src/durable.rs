//! A `file://` archive that is durable when a write returns.
//!
//! object_store's `LocalFileSystem` writes an object to a temporary file and
//! renames it into place, creating the directories on its path, but never
//! fsyncs: after a power cut the object, or the directory entry naming it,
//! may be gone. The core purges its local log once an object is recorded as
//! tiered, so the archive must hold it by then. [`DurableLocal`] wraps the
//! local store: after a put, a completed multipart upload, a copy or a rename
//! returns from it, the object file is fsynced, then every directory from its
//! parent up to the store's root (a directory's entry lives in its parent, so
//! a new directory needs its parent synced; all of them are synced, not only
//! the ones this write created, because an earlier attempt that failed may
//! have created one and never synced it). An fsync that fails fails the
//! write, naming the path, so nothing is recorded as tiered on an unknown
//! state. Deletions are not synced: an expired object that comes back after
//! a power cut is only deleted again. An S3 store needs none of this: a PUT
//! answered 200 is durable.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::Future;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// Makes one file or directory durable (`fsync`). Production uses
/// [`sync_path`]; tests inject a recorder.
pub type SyncFn = Arc<dyn Fn(&std::path::Path) -> io::Result<()> + Send + Sync>;

/// `fsync` of a file or a directory (on Unix a directory opens read-only and
/// syncs like a file).
pub fn sync_path(path: &std::path::Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Creates `dir` and its missing parents, each new directory's entry made
/// durable by syncing its parent.
pub fn create_dir_all_durably(dir: &std::path::Path, sync: &SyncFn) -> io::Result<()> {
    let missing: Vec<&std::path::Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync(parent)?;
        }
    }
    Ok(())
}

/// Syncs `file`, then each directory from its parent up to `root` (only
/// the parent if `file` is not under `root`).
fn sync_file_and_dirs(
    sync: &SyncFn,
    file: &std::path::Path,
    root: &std::path::Path,
) -> io::Result<()> {
    let err = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("fsync {path}: {e}"))
    };
    sync(file).map_err(err(file))?;
    for dir in file.ancestors().skip(1) {
        sync(dir).map_err(err(dir))?;
        if dir == root || !dir.starts_with(root) {
            break;
        }
    }
    Ok(())
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a write needs to make its object durable.
#[derive(Clone)]
struct Syncer {
    local: Arc<LocalFileSystem>,
    /// The store's root, canonical (as the store resolves paths).
    root: PathBuf,
    sync: SyncFn,
}

impl Syncer {
    async fn make_durable(&self, location: &Path) -> Result<()> {
        let file = self.local.path_to_filesystem(location)?;
        let (root, sync) = (self.root.clone(), Arc::clone(&self.sync));
        let res = tokio::task::spawn_blocking(move || sync_file_and_dirs(&sync, &file, &root))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        res.map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }
}

/// See the module documentation.
pub struct DurableLocal {
    syncer: Syncer,
}

impl fmt::Debug for DurableLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableLocal")
            .field("root", &self.syncer.root)
            .finish()
    }
}

impl fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.syncer.local)
    }
}

impl DurableLocal {
    /// The local store rooted at `dir` (created durably if missing), syncing
    /// with `sync`.
    pub fn open(dir: &std::path::Path, sync: SyncFn) -> io::Result<Self> {
        create_dir_all_durably(dir, &sync)?;
        let root = std::fs::canonicalize(dir)?;
        let local = LocalFileSystem::new_with_prefix(&root).map_err(io::Error::other)?;
        Ok(Self {
            syncer: Syncer {
                local: Arc::new(local),
                root,
                sync,
            },
        })
    }
}

// object_store's traits are `#[async_trait]`; these are its expansions
// written out (the archive does not depend on async-trait).
impl ObjectStore for DurableLocal {
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
            let put = self.syncer.local.put_opts(location, payload, opts).await?;
            self.syncer.make_durable(location).await?;
            Ok(put)
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
            let upload = self.syncer.local.put_multipart_opts(location, opts).await?;
            let upload: Box<dyn MultipartUpload> = Box::new(DurableUpload {
                upload,
                location: location.clone(),
                syncer: self.syncer.clone(),
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
        self.syncer.local.get_opts(location, options)
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
        self.syncer.local.get_ranges(location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.syncer.local.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.syncer.local.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.syncer.local.list_with_offset(prefix, offset)
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
        self.syncer.local.list_with_delimiter(prefix)
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
        Box::pin(async move {
            self.syncer.local.copy_opts(from, to, options).await?;
            self.syncer.make_durable(to).await
        })
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
        Box::pin(async move {
            self.syncer.local.rename_opts(from, to, options).await?;
            self.syncer.make_durable(to).await
        })
    }
}

/// A multipart upload to a [`DurableLocal`]: durable when `complete` returns.
struct DurableUpload {
    upload: Box<dyn MultipartUpload>,
    location: Path,
    syncer: Syncer,
}

impl fmt::Debug for DurableUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableUpload")
            .field("upload", &self.upload)
            .field("location", &self.location)
            .finish()
    }
}

impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    fn complete<'life0, 'async_trait>(&'life0 mut self) -> BoxFut<'async_trait, PutResult>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let put = self.upload.complete().await?;
            self.syncer.make_durable(&self.location).await?;
            Ok(put)
        })
    }

    fn abort<'life0, 'async_trait>(&'life0 mut self) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.upload.abort()
    }
}
