//! Server-side encryption of the archive's S3 objects: the settings and
//! their mapping onto `object_store`'s S3 builder, which then sends the
//! `x-amz-server-side-encryption*` headers with every object it writes
//! (single PUTs and multipart uploads). Reads need no header: S3 decrypts
//! SSE-S3 and SSE-KMS objects for any caller the bucket (and, for KMS, the
//! key policy) allows.
//!
//! Unset, no header is sent and the bucket's default encryption applies
//! (AWS S3 encrypts every new object with SSE-S3 at least, since January
//! 2023); the standard `AWS_SERVER_SIDE_ENCRYPTION`, `AWS_SSE_KMS_KEY_ID`
//! and `AWS_SSE_BUCKET_KEY_ENABLED` environment variables still apply then.
//! SSE-C (customer-provided keys) is not offered: every reader, the `strata
//! query` CLI included, would need the key.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// Which server-side encryption to ask S3 for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sse {
    /// SSE-S3: keys managed by S3 (`x-amz-server-side-encryption: AES256`).
    S3,
    /// SSE-KMS: keys in AWS KMS (`aws:kms`), the given key or the account's
    /// `aws/s3` key.
    Kms,
}

/// The server-side encryption settings of the archive's S3 store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Encryption {
    /// `None`: send no header (the bucket's default applies).
    pub sse: Option<Sse>,
    /// KMS key id, alias or ARN (SSE-KMS only); unset: `aws/s3`.
    pub kms_key_id: Option<String>,
    /// Use an S3 Bucket Key, cutting KMS requests (SSE-KMS only); unset:
    /// the bucket's setting.
    pub bucket_key: Option<bool>,
}

/// Settings that contradict each other (the reason; the caller names its
/// config keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a KMS key id applies to SSE-KMS only (server-side encryption \"kms\")")]
    KmsKeyWithoutKms,
    #[error("bucket keys apply to SSE-KMS only (server-side encryption \"kms\")")]
    BucketKeyWithoutKms,
    #[error("the KMS key id is empty")]
    EmptyKmsKeyId,
}

/// `object_store`'s name of an encryption setting (its key enum is not
/// exported, its string names are).
fn key(name: &str) -> AmazonS3ConfigKey {
    name.parse()
        .unwrap_or_else(|e| panic!("object_store knows the key {name}: {e}"))
}

impl S3Encryption {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), SseError> {
        let kms = self.sse == Some(Sse::Kms);
        match &self.kms_key_id {
            Some(id) if id.trim().is_empty() => return Err(SseError::EmptyKmsKeyId),
            Some(_) if !kms => return Err(SseError::KmsKeyWithoutKms),
            _ => {}
        }
        if self.bucket_key.is_some() && !kms {
            return Err(SseError::BucketKeyWithoutKms);
        }
        Ok(())
    }

    /// `s3` with these settings; unset leaves it as it is.
    pub fn apply(&self, s3: AmazonS3Builder) -> AmazonS3Builder {
        let sse = key("aws_server_side_encryption");
        let mut s3 = match self.sse {
            None => return s3,
            Some(Sse::S3) => s3.with_config(sse, "AES256"),
            Some(Sse::Kms) => s3.with_config(sse, "aws:kms"),
        };
        if let Some(id) = &self.kms_key_id {
            s3 = s3.with_config(key("aws_sse_kms_key_id"), id.trim());
        }
        if let Some(enabled) = self.bucket_key {
            s3 = s3.with_bucket_key(enabled);
        }
        s3
    }

    /// Whether any header is asked for.
    pub fn is_set(&self) -> bool {
        self.sse.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s3: &AmazonS3Builder, name: &str) -> Option<String> {
        s3.get_config_value(&key(name))
    }

    fn applied(enc: &S3Encryption) -> AmazonS3Builder {
        enc.validate().unwrap();
        let s3 = enc.apply(AmazonS3Builder::new());
        // The builder accepts it (no network: building only parses).
        s3.clone().with_bucket_name("b").build().unwrap();
        s3
    }

    #[test]
    fn unset_sends_no_header_and_keeps_the_environments_choice() {
        let s3 = applied(&S3Encryption::default());
        assert_eq!(value(&s3, "aws_server_side_encryption"), None);
        let from_env =
            AmazonS3Builder::new().with_config(key("aws_server_side_encryption"), "aws:kms");
        let kept = S3Encryption::default().apply(from_env);
        assert_eq!(
            value(&kept, "aws_server_side_encryption").as_deref(),
            Some("aws:kms")
        );
    }

    #[test]
    fn sse_s3_asks_for_aes256() {
        let s3 = applied(&S3Encryption {
            sse: Some(Sse::S3),
            ..S3Encryption::default()
        });
        assert_eq!(
            value(&s3, "aws_server_side_encryption").as_deref(),
            Some("AES256")
        );
        assert_eq!(value(&s3, "aws_sse_kms_key_id"), None);
    }

    #[test]
    fn sse_kms_names_the_key_and_the_bucket_key() {
        let s3 = applied(&S3Encryption {
            sse: Some(Sse::Kms),
            kms_key_id: Some(" arn:aws:kms:eu-west-1:111122223333:key/abcd ".into()),
            bucket_key: Some(true),
        });
        assert_eq!(
            value(&s3, "aws_server_side_encryption").as_deref(),
            Some("aws:kms")
        );
        assert_eq!(
            value(&s3, "aws_sse_kms_key_id").as_deref(),
            Some("arn:aws:kms:eu-west-1:111122223333:key/abcd")
        );
        assert_eq!(
            value(&s3, "aws_sse_bucket_key_enabled").as_deref(),
            Some("true")
        );
        // Without a key id: the account's aws/s3 key.
        let s3 = applied(&S3Encryption {
            sse: Some(Sse::Kms),
            ..S3Encryption::default()
        });
        assert_eq!(value(&s3, "aws_sse_kms_key_id"), None);
        assert_eq!(value(&s3, "aws_sse_bucket_key_enabled"), None);
    }

    #[test]
    fn contradictions_are_refused() {
        let kms_key = S3Encryption {
            sse: Some(Sse::S3),
            kms_key_id: Some("k".into()),
            bucket_key: None,
        };
        assert_eq!(kms_key.validate(), Err(SseError::KmsKeyWithoutKms));
        let bucket_key = S3Encryption {
            bucket_key: Some(true),
            ..S3Encryption::default()
        };
        assert_eq!(bucket_key.validate(), Err(SseError::BucketKeyWithoutKms));
        let empty = S3Encryption {
            sse: Some(Sse::Kms),
            kms_key_id: Some(" ".into()),
            bucket_key: None,
        };
        assert_eq!(empty.validate(), Err(SseError::EmptyKmsKeyId));
    }

    #[test]
    fn settings_parse_from_config_spelling() {
        #[derive(serde::Deserialize)]
        struct C {
            sse: Sse,
        }
        let c: C = serde_json::from_str(r#"{"sse":"kms"}"#).unwrap();
        assert_eq!(c.sse, Sse::Kms);
        let c: C = serde_json::from_str(r#"{"sse":"s3"}"#).unwrap();
        assert_eq!(c.sse, Sse::S3);
        assert!(serde_json::from_str::<C>(r#"{"sse":"sse-c"}"#).is_err());
    }
}
