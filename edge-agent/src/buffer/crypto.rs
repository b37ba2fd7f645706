//! Encryption at rest of buffer segments (optional): keys, key files and the
//! pure sealing and opening of one batch with AES-256-GCM (`ring`).
//!
//! # Keys
//!
//! A key file holds a 256-bit key as 64 hex characters (surrounding
//! whitespace, such as a trailing newline, is ignored), e.g. from
//! `openssl rand -hex 32`; like a TLS private key it must not be readable by
//! group or others. A key is known by its **fingerprint**: the first 8 bytes
//! of SHA-256 over a fixed label and the key, printed as 16 hex digits. The
//! fingerprint is stored in every encrypted segment, so a wrong or missing
//! key is named before anything is decrypted or changed.
//!
//! # Per-segment keys and nonces
//!
//! Each encrypted segment file starts with a header holding 16 random bytes,
//! its **salt**; the segment's AES-256-GCM key is HKDF-SHA256-Expand of the
//! buffer key (extracted once) with info `"segment" || salt`. Within a
//! segment, each sealed batch uses the 96-bit nonce `[u64 LE counter][4 zero
//! bytes]`, where the counter counts sealings in that segment (failed writes
//! included) and is stored in front of the ciphertext. A segment is only
//! ever appended to by the process that created it (a reopened buffer starts
//! a new segment), so no (key, nonce) pair repeats: not after a crash cut a
//! torn tail (its bytes may linger on the medium), not after a failed write.
//! Each segment key seals few batches, far inside AES-GCM's limits.
//!
//! The associated data of a sealed batch is its frame's body header
//! (`first_seq`, `records`, `max_timestamp_ms`), so a frame moved to another
//! position, or whose header was edited, fails authentication.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf};
use std::fmt;
use std::path::{Path, PathBuf};

/// Bytes of a buffer key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a key fingerprint.
pub const FINGERPRINT_BYTES: usize = 8;
/// Bytes of a segment's random salt.
pub const SALT_BYTES: usize = 16;
const COUNTER_BYTES: usize = 8;
const TAG_BYTES: usize = 16;
/// Bytes sealing adds to a batch: the nonce counter and the GCM tag.
pub const SEAL_OVERHEAD_BYTES: usize = COUNTER_BYTES + TAG_BYTES;

const FINGERPRINT_LABEL: &[u8] = b"strata edge buffer key fingerprint v1";
const EXTRACT_SALT: &[u8] = b"strata edge buffer v1";
const SEGMENT_INFO: &[u8] = b"segment";

/// The first 8 bytes of SHA-256(label || key): names a key without
/// revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_BYTES]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a key file's contents are not a key (the file is never echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("holds {found} characters after trimming whitespace, expected 64 hex characters")]
    Length { found: usize },
    #[error("character {at} is not a hex digit")]
    NotHex { at: usize },
}

/// Why the configured keys cannot be used; names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("encryption key file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("encryption key file {}: {reason}; it must hold a 256-bit key as 64 hex characters (create one with: openssl rand -hex 32 > FILE; chmod 600 FILE)", path.display())]
    Format {
        path: PathBuf,
        reason: KeyFormatError,
    },
    #[error("encryption key file {} holds the same key (fingerprint {fingerprint}) as {}", path.display(), other.display())]
    Duplicate {
        path: PathBuf,
        other: PathBuf,
        fingerprint: Fingerprint,
    },
}

/// Parses a key file's contents: 64 hex characters, whitespace around them
/// ignored.
pub fn parse_key(contents: &[u8]) -> Result<[u8; KEY_BYTES], KeyFormatError> {
    let text = contents.trim_ascii();
    if text.len() != 2 * KEY_BYTES {
        return Err(KeyFormatError::Length { found: text.len() });
    }
    let nibble = |at: usize| match text[at] {
        c @ b'0'..=b'9' => Ok(c - b'0'),
        c @ b'a'..=b'f' => Ok(c - b'a' + 10),
        c @ b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(KeyFormatError::NotHex { at }),
    };
    let mut key = [0; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = nibble(2 * i)? << 4 | nibble(2 * i + 1)?;
    }
    Ok(key)
}

/// One buffer key: its HKDF pseudo-random key (the raw key is not kept)
/// and its fingerprint.
#[derive(Clone)]
pub struct BufferKey {
    prk: hkdf::Prk,
    fingerprint: Fingerprint,
    path: PathBuf,
}

impl fmt::Debug for BufferKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferKey")
            .field("fingerprint", &self.fingerprint)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl BufferKey {
    /// A key from its bytes; `path` names where it came from in errors.
    pub fn from_bytes(key: &[u8; KEY_BYTES], path: PathBuf) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(FINGERPRINT_LABEL);
        ctx.update(key);
        let digest = ctx.finish();
        let mut fingerprint = [0; FINGERPRINT_BYTES];
        fingerprint.copy_from_slice(&digest.as_ref()[..FINGERPRINT_BYTES]);
        Self {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, EXTRACT_SALT).extract(key),
            fingerprint: Fingerprint(fingerprint),
            path,
        }
    }

    /// Reads a key file, refusing one readable by group or others (the
    /// check of the TLS private keys).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file_err = |reason: String| KeyError::File {
            path: path.to_owned(),
            reason,
        };
        strata_runtime::tls::check_key_permissions(path).map_err(|e| match e {
            strata_runtime::tls::TlsError::KeyPermissions { mode, .. } => file_err(format!(
                "readable by group or others (mode {mode:o}); run: chmod 600 {}",
                path.display()
            )),
            other => file_err(other.to_string()),
        })?;
        let contents = std::fs::read(path).map_err(|e| file_err(format!("reading: {e}")))?;
        let key = parse_key(&contents).map_err(|reason| KeyError::Format {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Self::from_bytes(&key, path.to_owned()))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The AES-256-GCM key of the segment with `salt`.
    pub(super) fn segment_cipher(&self, salt: &[u8; SALT_BYTES]) -> SegmentCipher {
        let info = [SEGMENT_INFO, salt.as_slice()];
        let okm = self
            .prk
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes are within HKDF-SHA256's output limit");
        SegmentCipher {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            fingerprint: self.fingerprint,
        }
    }
}

/// The keys a buffer knows: `current` encrypts new segments (none: new
/// segments are plaintext); `previous` only read segments written before a
/// key rotation.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub current: Option<BufferKey>,
    pub previous: Vec<BufferKey>,
}

impl Keyring {
    /// Loads the configured key files; `None` when there are none.
    pub fn load(current: Option<&Path>, previous: &[PathBuf]) -> Result<Option<Self>, KeyError> {
        if current.is_none() && previous.is_empty() {
            return Ok(None);
        }
        let ring = Self {
            current: current.map(BufferKey::load).transpose()?,
            previous: previous
                .iter()
                .map(|p| BufferKey::load(p))
                .collect::<Result<_, _>>()?,
        };
        ring.check_distinct()?;
        Ok(Some(ring))
    }

    fn check_distinct(&self) -> Result<(), KeyError> {
        let keys: Vec<&BufferKey> = self.keys().collect();
        for (i, key) in keys.iter().enumerate() {
            if let Some(other) = keys[..i].iter().find(|k| k.fingerprint == key.fingerprint) {
                return Err(KeyError::Duplicate {
                    path: key.path.clone(),
                    other: other.path.clone(),
                    fingerprint: key.fingerprint,
                });
            }
        }
        Ok(())
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &BufferKey> {
        self.current.iter().chain(&self.previous)
    }

    /// The key with `fingerprint`, if configured.
    pub fn find(&self, fingerprint: Fingerprint) -> Option<&BufferKey> {
        self.keys().find(|k| k.fingerprint == fingerprint)
    }

    /// The fingerprints of every key, for error messages.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.keys().map(|k| k.fingerprint).collect()
    }
}

/// 16 fresh random bytes for a new segment; `None` if the system's random
/// generator failed.
pub(super) fn random_salt() -> Option<[u8; SALT_BYTES]> {
    let mut salt = [0; SALT_BYTES];
    SystemRandom::new().fill(&mut salt).ok()?;
    Some(salt)
}

/// Why a sealed batch does not open (never says more: AES-GCM cannot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed batch of {len} bytes is shorter than its nonce counter and tag ({SEAL_OVERHEAD_BYTES} bytes)")]
    Short { len: usize },
    #[error("authentication failed: the batch or its frame header was altered, or it was sealed with another key (segment key fingerprint {fingerprint})")]
    Authentication { fingerprint: Fingerprint },
}

/// One segment's AES-256-GCM key.
pub(super) struct SegmentCipher {
    key: LessSafeKey,
    fingerprint: Fingerprint,
}

impl fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentCipher")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0; aead::NONCE_LEN];
    bytes[..COUNTER_BYTES].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

impl SegmentCipher {
    /// Appends `[u64 LE counter][ciphertext of batch][tag]` to `out`. The
    /// caller never passes the same `counter` twice for one segment.
    pub fn seal(&self, counter: u64, aad: &[u8], batch: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&counter.to_le_bytes());
        let start = out.len();
        out.extend_from_slice(batch);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), &mut out[start..])
            .expect("a batch is far below AES-GCM's per-message limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Authenticates and decrypts a sealed batch in place; returns the range
    /// of `sealed` that holds the batch.
    pub fn open(&self, aad: &[u8], sealed: &mut [u8]) -> Result<std::ops::Range<usize>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD_BYTES {
            return Err(OpenError::Short { len: sealed.len() });
        }
        let (counter, in_out) = sealed.split_at_mut(COUNTER_BYTES);
        let counter = u64::from_le_bytes(counter.try_into().expect("8 bytes"));
        let plain = self
            .key
            .open_in_place(nonce(counter), Aad::from(aad), in_out)
            .map_err(|_| OpenError::Authentication {
                fingerprint: self.fingerprint,
            })?;
        Ok(COUNTER_BYTES..COUNTER_BYTES + plain.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BufferKey {
        BufferKey::from_bytes(&[byte; KEY_BYTES], PathBuf::from(format!("key-{byte}")))
    }

    const SALT: [u8; SALT_BYTES] = [9; SALT_BYTES];
    const AAD: &[u8] = b"first_seq+records+max_timestamp";

    fn sealed(cipher: &SegmentCipher, counter: u64, batch: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        cipher.seal(counter, AAD, batch, &mut out);
        out
    }

    #[test]
    fn key_files_hold_64_hex_characters() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let key = parse_key(format!("  {hex}\n").as_bytes()).unwrap();
        assert_eq!(key[..3], [0x00, 0x11, 0x22]);
        assert_eq!(key[31], 0xff);
        assert_eq!(
            parse_key(&hex.as_bytes()[..63]),
            Err(KeyFormatError::Length { found: 63 })
        );
        let mut bad = hex.as_bytes().to_vec();
        bad[10] = b'g';
        assert_eq!(parse_key(&bad), Err(KeyFormatError::NotHex { at: 10 }));
        // 32 raw bytes are not accepted: one format only.
        assert!(parse_key(&[0x41; 32]).is_err());
    }

    #[test]
    fn fingerprints_name_keys_and_are_stable() {
        assert_eq!(key(1).fingerprint(), key(1).fingerprint());
        assert_ne!(key(1).fingerprint(), key(2).fingerprint());
        // Pinned: the fingerprint is stored in segment headers.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(FINGERPRINT_LABEL);
        ctx.update(&[1; KEY_BYTES]);
        let want = &ctx.finish().as_ref()[..FINGERPRINT_BYTES].to_vec();
        assert_eq!(key(1).fingerprint().0.as_slice(), want.as_slice());
        assert_eq!(key(1).fingerprint().to_string().len(), 16);
        // What docs/encryption.md's shell recipe prints for this key.
        assert_eq!(key(0x5a).fingerprint().to_string(), "a8e2e6f3e4419e8b");
    }

    #[test]
    fn a_sealed_batch_round_trips_and_hides_the_plaintext() {
        let cipher = key(1).segment_cipher(&SALT);
        let batch = b"distinctive-plaintext-payload";
        let mut s = sealed(&cipher, 7, batch);
        assert_eq!(s.len(), batch.len() + SEAL_OVERHEAD_BYTES);
        assert!(!s.windows(batch.len()).any(|w| w == batch));
        let range = cipher.open(AAD, &mut s).unwrap();
        assert_eq!(&s[range], batch);
        // An empty batch seals too (the buffer never writes one).
        let mut e = sealed(&cipher, 8, b"");
        assert_eq!(cipher.open(AAD, &mut e).unwrap().len(), 0);
    }

    #[test]
    fn a_wrong_key_or_another_segment_salt_does_not_open() {
        let s = sealed(&key(1).segment_cipher(&SALT), 0, b"batch");
        let other_key = key(2).segment_cipher(&SALT);
        let err = other_key.open(AAD, &mut s.clone()).unwrap_err();
        assert_eq!(
            err,
            OpenError::Authentication {
                fingerprint: key(2).fingerprint()
            }
        );
        let other_salt = key(1).segment_cipher(&[8; SALT_BYTES]);
        assert!(other_salt.open(AAD, &mut s.clone()).is_err());
    }

    #[test]
    fn any_tampered_byte_fails_authentication() {
        let cipher = key(1).segment_cipher(&SALT);
        let s = sealed(&cipher, 3, b"some batch bytes");
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x01;
            assert!(cipher.open(AAD, &mut t).is_err(), "flip at byte {i}");
        }
    }

    #[test]
    fn a_wrong_nonce_or_position_fails_authentication() {
        let cipher = key(1).segment_cipher(&SALT);
        let s = sealed(&cipher, 3, b"batch");
        // The counter (nonce) stored in front of the ciphertext.
        let mut t = s.clone();
        t[..COUNTER_BYTES].copy_from_slice(&4u64.to_le_bytes());
        assert!(cipher.open(AAD, &mut t).is_err());
        // Another frame header (position) as associated data.
        assert!(cipher
            .open(b"first_seq+records+max_timestampX", &mut s.clone())
            .is_err());
        assert_eq!(
            cipher.open(AAD, &mut s[..10].to_vec()),
            Err(OpenError::Short { len: 10 })
        );
    }

    #[test]
    fn a_keyring_finds_keys_by_fingerprint_and_refuses_duplicates() {
        let ring = Keyring {
            current: Some(key(1)),
            previous: vec![key(2)],
        };
        assert_eq!(
            ring.find(key(2).fingerprint()).unwrap().path(),
            Path::new("key-2")
        );
        assert!(ring.find(key(3).fingerprint()).is_none());
        assert_eq!(ring.fingerprints().len(), 2);
        ring.check_distinct().unwrap();
        let dup = Keyring {
            current: Some(key(1)),
            previous: vec![key(1)],
        };
        assert!(matches!(
            dup.check_distinct(),
            Err(KeyError::Duplicate { .. })
        ));
    }

    #[test]
    fn key_files_are_loaded_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = BufferKey::load(&path).unwrap();
        assert_eq!(
            loaded.fingerprint(),
            BufferKey::from_bytes(&[0xab; 32], path.clone()).fingerprint()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = BufferKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("buffer.key") && err.contains("mode 640") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::write(&path, "not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = BufferKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("9 characters") && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        assert!(
            !err.contains("not a key"),
            "the file's contents are never echoed: {err}"
        );
        let missing = BufferKey::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope"), "{missing}");
        assert!(Keyring::load(None, &[]).unwrap().is_none());
    }
}
