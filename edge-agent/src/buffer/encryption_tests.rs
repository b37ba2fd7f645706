//! Unit tests of encrypted buffers: sealed segments on disk, reopening,
//! missing and wrong keys (nothing changed), turning encryption on and off,
//! key rotation, tampering and torn tails.

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use strata_segment_log::prefill::Prefill;
use tempfile::TempDir;

const PAYLOAD: &[u8] = b"distinctive-payload-0123456789";

fn opts() -> BufferOptions {
    BufferOptions {
        segment_bytes_max: 512,
        buffer_bytes_max: 1 << 20,
        batch_bytes_max: 128,
        // These tests compare segment files byte for byte.
        prefill: Prefill::OFF,
        ..BufferOptions::default()
    }
}

/// Writes a key file of `byte` repeated, mode 0600; returns its path.
fn key_file(dir: &TempDir, name: &str, byte: u8) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, format!("{}\n", hex(&[byte; 32]))).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fingerprint(byte: u8) -> Fingerprint {
    BufferKey::from_bytes(&[byte; 32], PathBuf::new()).fingerprint()
}

fn with_key(key: Option<&Path>, previous: &[&Path]) -> BufferOptions {
    BufferOptions {
        encryption_key_file: key.map(Path::to_owned),
        encryption_previous_key_files: previous.iter().map(|p| p.to_path_buf()).collect(),
        ..opts()
    }
}

fn open(dir: &Path, opts: BufferOptions) -> StreamBuffer {
    let (buffer, _) = StreamBuffer::open(dir, opts).expect("open");
    buffer.check_invariants();
    buffer
}

fn batch(seq: u64) -> Vec<u8> {
    let mut b = PAYLOAD.to_vec();
    b.extend_from_slice(seq.to_string().as_bytes());
    b
}

fn append_synced(buffer: &mut StreamBuffer, batches: usize) {
    for _ in 0..batches {
        let seq = buffer.next_seq();
        buffer.append(2, seq as i64, &batch(seq)).expect("append");
    }
    buffer.sync().expect("sync");
    buffer.check_invariants();
}

/// Every batch from `acked_seq` on is the one appended at its seq.
fn assert_reads_back(buffer: &StreamBuffer, batches: usize) {
    let read = buffer.read_durable(0, usize::MAX).expect("read");
    assert_eq!(read.len(), batches);
    for b in &read {
        assert_eq!(b.batch, batch(b.first_seq), "batch at {}", b.first_seq);
        assert_eq!(b.max_timestamp_ms, b.first_seq as i64);
    }
}

/// File name → contents of everything in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

fn names_ending(dir: &Path, ext: &str) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .filter(|n| n.ends_with(ext))
        .collect()
}

#[test]
fn encrypted_segments_hide_the_payload_and_read_back() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    append_synced(&mut buffer, 40);
    assert_reads_back(&buffer, 40);
    assert!(names_ending(dir.path(), ".buf").is_empty());
    let sealed = names_ending(dir.path(), ".ebuf");
    assert!(sealed.len() > 1, "segments rolled: {sealed:?}");
    for (name, bytes) in snapshot(dir.path()) {
        assert!(
            !bytes.windows(PAYLOAD.len()).any(|w| w == PAYLOAD),
            "{name} holds the plaintext"
        );
        if name.ends_with(".ebuf") {
            assert_eq!(&bytes[..8], b"STRATAEB");
            assert_eq!(bytes[12..20], fingerprint(1).0);
            assert!(bytes.len() as u64 <= opts().segment_bytes_max);
        }
    }
    // Reopened: everything reads back, and appends go to a new segment.
    drop(buffer);
    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    assert_reads_back(&buffer, 40);
    let before = snapshot(dir.path());
    append_synced(&mut buffer, 1);
    let after = snapshot(dir.path());
    for (name, bytes) in &before {
        assert_eq!(after.get(name), Some(bytes), "{name} was appended to");
    }
    assert_eq!(after.len(), before.len() + 1);
    assert_reads_back(&buffer, 41);
}

#[test]
fn a_wrong_key_is_named_and_changes_nothing() {
    let keys = TempDir::new().unwrap();
    let (right, wrong) = (key_file(&keys, "a.key", 1), key_file(&keys, "b.key", 2));
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&right), &[]));
    append_synced(&mut buffer, 3);
    drop(buffer);
    // A torn tail and a stale acked.tmp: what recovery would change.
    let last = dir
        .path()
        .join(names_ending(dir.path(), ".ebuf").pop().unwrap());
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0xee; 7]);
    fs::write(&last, bytes).unwrap();
    fs::write(dir.path().join("acked.tmp"), b"junk").unwrap();
    let before = snapshot(dir.path());

    let err = StreamBuffer::open(dir.path(), with_key(Some(&wrong), &[])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BufferError::WrongKey { .. }), "{msg}");
    for needle in [
        last.display().to_string(),
        fingerprint(1).to_string(),
        fingerprint(2).to_string(),
        "nothing was changed".to_owned(),
    ] {
        assert!(msg.contains(&needle), "{needle} missing in: {msg}");
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a wrong key changed the directory"
    );

    let err = StreamBuffer::open(dir.path(), opts()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BufferError::NoKey { .. }), "{msg}");
    assert!(
        msg.contains(&fingerprint(1).to_string()) && msg.contains("encryption_key_file"),
        "{msg}"
    );
    assert_eq!(snapshot(dir.path()), before, "no key changed the directory");

    // The right key then recovers: the torn tail is cut, nothing lost.
    let (buffer, recovery) = StreamBuffer::open(dir.path(), with_key(Some(&right), &[])).unwrap();
    assert_eq!(recovery.truncated_bytes, 7);
    assert_reads_back(&buffer, 3);
}

#[test]
fn turning_encryption_on_keeps_the_plaintext_segments_readable_and_unchanged() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), opts());
    append_synced(&mut buffer, 20);
    drop(buffer);
    let plain = snapshot(dir.path());
    assert!(names_ending(dir.path(), ".ebuf").is_empty());

    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    assert_reads_back(&buffer, 20);
    append_synced(&mut buffer, 20);
    assert_reads_back(&buffer, 40);
    let now = snapshot(dir.path());
    for (name, bytes) in plain.iter().filter(|(n, _)| n.ends_with(".buf")) {
        assert_eq!(now.get(name), Some(bytes), "plaintext {name} changed");
    }
    assert!(!names_ending(dir.path(), ".ebuf").is_empty());
    drop(buffer);
    assert_reads_back(&open(dir.path(), with_key(Some(&key), &[])), 40);
}

#[test]
fn turning_encryption_off_or_rotating_reads_old_segments_with_the_previous_key() {
    let keys = TempDir::new().unwrap();
    let (old, new) = (key_file(&keys, "old.key", 1), key_file(&keys, "new.key", 2));
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&old), &[]));
    append_synced(&mut buffer, 10);
    drop(buffer);

    // Rotation: new segments under the new key, old ones read with the old.
    let mut buffer = open(dir.path(), with_key(Some(&new), &[&old]));
    append_synced(&mut buffer, 10);
    assert_reads_back(&buffer, 20);
    let fingerprints: Vec<[u8; 8]> = snapshot(dir.path())
        .iter()
        .filter(|(n, _)| n.ends_with(".ebuf"))
        .map(|(_, b)| b[12..20].try_into().unwrap())
        .collect();
    assert!(fingerprints.contains(&fingerprint(1).0) && fingerprints.contains(&fingerprint(2).0));
    drop(buffer);
    // Without the old key the old segments are refused, by name.
    let err = StreamBuffer::open(dir.path(), with_key(Some(&new), &[])).unwrap_err();
    assert!(matches!(err, BufferError::WrongKey { .. }), "{err}");

    // Off: no current key, both old keys kept for reading; new segments plain.
    let mut buffer = open(dir.path(), with_key(None, &[&old, &new]));
    append_synced(&mut buffer, 10);
    assert_reads_back(&buffer, 30);
    assert!(!names_ending(dir.path(), ".buf").is_empty());
    // Once everything is forwarded no key is needed any more.
    let end = buffer.durable_seq();
    buffer.ack(end).unwrap();
    drop(buffer);
    let buffer = open(dir.path(), opts());
    assert_eq!(buffer.acked_seq(), end);
    assert_eq!(buffer.next_seq(), end);
    assert!(names_ending(dir.path(), ".ebuf").is_empty());
}

#[test]
fn fully_acked_encrypted_segments_need_no_key() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    append_synced(&mut buffer, 30);
    let end = buffer.durable_seq();
    buffer.ack(end).unwrap();
    drop(buffer);
    // The last (active) segment is left behind, fully acked.
    assert_eq!(names_ending(dir.path(), ".ebuf").len(), 1);
    let mut buffer = open(dir.path(), opts());
    assert!(names_ending(dir.path(), ".ebuf").is_empty());
    assert_eq!(buffer.next_seq(), end, "no seq is reused");
    append_synced(&mut buffer, 1);
    assert_eq!(names_ending(dir.path(), ".buf").len(), 1);
}

/// Flips a byte of the first sealed batch and fixes the frame checksum, so
/// only authentication can notice.
#[test]
fn a_tampered_sealed_batch_is_refused_when_read() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    append_synced(&mut buffer, 2);
    drop(buffer);
    let path = dir.path().join(names_ending(dir.path(), ".ebuf").remove(0));
    let mut bytes = fs::read(&path).unwrap();
    let frame = format::SEGMENT_HEADER_BYTES;
    let body_len = u32::from_le_bytes(bytes[frame..frame + 4].try_into().unwrap()) as usize;
    let body = frame + format::FRAME_HEADER_BYTES;
    bytes[body + format::BODY_HEADER_BYTES + 10] ^= 0x40;
    let crc = crc32c::crc32c(&bytes[body..body + body_len]);
    bytes[frame + 4..frame + 8].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, bytes).unwrap();

    let buffer = open(dir.path(), with_key(Some(&key), &[]));
    let err = buffer.read_durable(0, usize::MAX).unwrap_err().to_string();
    assert!(
        err.contains("authentication failed") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_torn_segment_header_is_cut_like_a_torn_tail() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    let mut buffer = open(dir.path(), with_key(Some(&key), &[]));
    append_synced(&mut buffer, 3);
    let next = buffer.next_seq();
    drop(buffer);
    // A segment created just before a crash: half a header.
    let torn = dir.path().join(format!("{next:020}.ebuf"));
    fs::write(&torn, b"STRATAEB\x01\x00").unwrap();
    let buffer = open(dir.path(), opts_with(&key));
    assert!(!torn.exists());
    assert_eq!(buffer.next_seq(), next);
    assert_reads_back(&buffer, 3);
    // The same in a sealed (not last) segment is corruption, named.
    drop(buffer);
    let mut later = open(dir.path(), opts_with(&key));
    append_synced(&mut later, 1);
    drop(later);
    let first = dir.path().join(names_ending(dir.path(), ".ebuf").remove(0));
    let mut bytes = fs::read(&first).unwrap();
    bytes[3] ^= 1;
    fs::write(&first, bytes).unwrap();
    let err = StreamBuffer::open(dir.path(), opts_with(&key)).unwrap_err();
    assert!(
        matches!(err, BufferError::Corrupt { ref path, offset: 0, .. } if *path == first),
        "{err}"
    );
}

fn opts_with(key: &Path) -> BufferOptions {
    with_key(Some(key), &[])
}

#[test]
fn unusable_key_files_are_refused_at_open() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let dir = TempDir::new().unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = StreamBuffer::open(dir.path(), opts_with(&key))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chmod 600") && err.contains("buffer.key"),
        "{err}"
    );
    let twice = StreamBuffer::open(
        dir.path(),
        with_key(
            Some(&key_file(&keys, "a.key", 3)),
            &[&key_file(&keys, "b.key", 3)],
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(twice.contains("same key"), "{twice}");
}

#[test]
fn the_budget_counts_sealing_overhead() {
    let keys = TempDir::new().unwrap();
    let key = key_file(&keys, "buffer.key", 1);
    let tight = BufferOptions {
        buffer_bytes_max: opts().segment_bytes_max + 128 + 28,
        ..opts_with(&key)
    };
    let err = tight.validate().unwrap_err().to_string();
    assert!(
        err.contains("buffer_bytes_max") && err.contains("+ 92 ="),
        "{err}"
    );
    let fits = BufferOptions {
        buffer_bytes_max: opts().segment_bytes_max + 128 + 92,
        ..tight
    };
    fits.validate().unwrap();
}
