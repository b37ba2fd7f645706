//! AWS access keys of Strata principals, for the edge's Kinesis-compatible
//! API: a client signs its requests (AWS Signature V4) with a key's secret,
//! and the edge maps the key's id to the Strata principal whose access
//! rules then apply unchanged.
//!
//! The keys live in the core's replicated catalog ([`AwsKeys`], whose serde
//! form is part of the catalog's snapshot format: change it only
//! compatibly); edge agents keep a copy so they can verify signatures while
//! the core is unreachable. The core generates a key ([`AwsKey::generate`])
//! before it proposes it, so every replica applies the same one.
//!
//! Format, like AWS's own: an access key id is 20 characters, `SK` then 18
//! of `A-Z0-9`; a secret is 40 characters of the base64 alphabet.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Length of an access key id.
pub const ACCESS_KEY_ID_LEN: usize = 20;
/// What every access key id starts with.
pub const ACCESS_KEY_ID_PREFIX: &str = "SK";
/// Length of a secret access key.
pub const SECRET_LEN: usize = 40;

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// One access key: its id, its secret and the principal it acts as.
/// `Debug` shows the secret's length only (commands and replies holding a
/// key may be logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsKey {
    pub access_key_id: String,
    /// Empty in listings given to callers not entitled to secrets.
    pub secret_access_key: String,
    pub principal: String,
}

impl std::fmt::Debug for AwsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKey")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &format_args!("<{} chars>", self.secret_access_key.len()),
            )
            .field("principal", &self.principal)
            .finish()
    }
}

/// Every access key, with a version raised on each change (so an edge's
/// copy can tell it is current).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsKeys {
    pub keys: Vec<AwsKey>,
    pub version: u64,
}

/// Why an access key id is not one Strata could have issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsKeyError {
    #[error("access key id {id:?} is not {ACCESS_KEY_ID_LEN} characters of A-Z and 0-9 starting with {ACCESS_KEY_ID_PREFIX}")]
    BadAccessKeyId { id: String },
}

impl AwsKey {
    /// A new key for `principal` (id and secret drawn from `rng`).
    pub fn generate(principal: &str, rng: &mut impl Rng) -> Self {
        Self {
            access_key_id: format!(
                "{ACCESS_KEY_ID_PREFIX}{}",
                draw(
                    rng,
                    ID_ALPHABET,
                    ACCESS_KEY_ID_LEN - ACCESS_KEY_ID_PREFIX.len()
                )
            ),
            secret_access_key: draw(rng, SECRET_ALPHABET, SECRET_LEN),
            principal: principal.to_string(),
        }
    }

    /// The same key without its secret.
    pub fn redacted(&self) -> Self {
        Self {
            secret_access_key: String::new(),
            ..self.clone()
        }
    }
}

/// Checks that `id` has the form of an access key id.
pub fn check_access_key_id(id: &str) -> Result<(), AwsKeyError> {
    let ok = id.len() == ACCESS_KEY_ID_LEN
        && id.starts_with(ACCESS_KEY_ID_PREFIX)
        && id.bytes().all(|b| ID_ALPHABET.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AwsKeyError::BadAccessKeyId { id: id.to_string() })
    }
}

fn draw(rng: &mut impl Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

impl AwsKeys {
    /// The key with this id.
    pub fn find(&self, access_key_id: &str) -> Option<&AwsKey> {
        self.keys.iter().find(|k| k.access_key_id == access_key_id)
    }

    /// Adds `key` (its id must be new) and raises the version.
    /// Returns false, changing nothing, when the id exists already.
    pub fn add(&mut self, key: AwsKey) -> bool {
        if self.find(&key.access_key_id).is_some() {
            return false;
        }
        self.keys.push(key);
        self.version += 1;
        true
    }

    /// Removes the key with this id and raises the version; returns it, or
    /// `None` (changing nothing) when there is no such key.
    pub fn remove(&mut self, access_key_id: &str) -> Option<AwsKey> {
        let i = self
            .keys
            .iter()
            .position(|k| k.access_key_id == access_key_id)?;
        self.version += 1;
        Some(self.keys.remove(i))
    }

    /// The same keys without their secrets.
    pub fn redacted(&self) -> Self {
        Self {
            keys: self.keys.iter().map(AwsKey::redacted).collect(),
            version: self.version,
        }
    }
}

/// A key as a flatbuffers table.
pub fn key_to_fb<'b>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'b>,
    k: &AwsKey,
) -> flatbuffers::WIPOffset<strata_schema::fb::AwsKey<'b>> {
    let access_key_id = Some(fbb.create_string(&k.access_key_id));
    let secret_access_key = Some(fbb.create_string(&k.secret_access_key));
    let principal = Some(fbb.create_string(&k.principal));
    strata_schema::fb::AwsKey::create(
        fbb,
        &strata_schema::fb::AwsKeyArgs {
            access_key_id,
            secret_access_key,
            principal,
        },
    )
}

/// A key from the wire.
pub fn key_from_fb(k: &strata_schema::fb::AwsKey<'_>) -> AwsKey {
    AwsKey {
        access_key_id: k.access_key_id().to_string(),
        secret_access_key: k.secret_access_key().unwrap_or_default().to_string(),
        principal: k.principal().to_string(),
    }
}

/// An `AwsKeyList` reply body.
pub fn build_key_list<'b>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'b>,
    keys: &AwsKeys,
) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset> {
    let list: Vec<_> = keys.keys.iter().map(|k| key_to_fb(fbb, k)).collect();
    let list = Some(fbb.create_vector(&list));
    strata_schema::fb::AwsKeyList::create(
        fbb,
        &strata_schema::fb::AwsKeyListArgs {
            keys: list,
            version: keys.version,
        },
    )
    .as_union_value()
}

/// The keys of an `AwsKeyList` reply.
pub fn key_list_from_fb(l: &strata_schema::fb::AwsKeyList<'_>) -> AwsKeys {
    AwsKeys {
        keys: l
            .keys()
            .map(|ks| ks.iter().map(|k| key_from_fb(&k)).collect())
            .unwrap_or_default(),
        version: l.version(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_keys_have_the_aws_format() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = AwsKey::generate("admin", &mut rng);
        let b = AwsKey::generate("admin", &mut rng);
        assert_ne!(a.access_key_id, b.access_key_id);
        for k in [&a, &b] {
            assert_eq!(k.access_key_id.len(), 20);
            assert!(k.access_key_id.starts_with("SK"));
            check_access_key_id(&k.access_key_id).unwrap();
            assert_eq!(k.secret_access_key.len(), 40);
            assert!(k
                .secret_access_key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
            assert_eq!(k.principal, "admin");
            let shown = format!("{k:?}");
            assert!(!shown.contains(&k.secret_access_key) && shown.contains("<40 chars>"));
        }
    }

    #[test]
    fn malformed_ids_are_named() {
        for bad in ["", "AKIAIOSFODNN7EXAMPLE", "SKabcdefghijklmnopqr", "SK123"] {
            let e = check_access_key_id(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn add_find_remove_raise_the_version() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut keys = AwsKeys::default();
        let k = AwsKey::generate("sensor-1", &mut rng);
        assert!(keys.add(k.clone()));
        assert!(!keys.add(k.clone()), "a duplicate id is refused");
        assert_eq!(keys.version, 1);
        assert_eq!(keys.find(&k.access_key_id), Some(&k));
        assert_eq!(keys.redacted().keys[0].secret_access_key, "");
        assert_eq!(keys.remove("SKNOSUCHKEY000000000"), None);
        assert_eq!(keys.version, 1);
        assert_eq!(keys.remove(&k.access_key_id), Some(k.clone()));
        assert_eq!(keys.version, 2);
        assert_eq!(keys.find(&k.access_key_id), None);
    }

    #[test]
    fn serde_form_is_stable() {
        let keys = AwsKeys {
            keys: vec![AwsKey {
                access_key_id: "SKAAAAAAAAAAAAAAAAAA".into(),
                secret_access_key: "s".into(),
                principal: "p".into(),
            }],
            version: 3,
        };
        let json = serde_json::to_string(&keys).unwrap();
        assert_eq!(
            json,
            r#"{"keys":[{"access_key_id":"SKAAAAAAAAAAAAAAAAAA","secret_access_key":"s","principal":"p"}],"version":3}"#
        );
        assert_eq!(serde_json::from_str::<AwsKeys>(&json).unwrap(), keys);
        let reply =
            strata_schema::wire::response(strata_schema::fb::ResponseBody::AwsKeyList, |fbb| {
                build_key_list(fbb, &keys)
            });
        let r = strata_schema::wire::decode_response(&reply).unwrap();
        assert_eq!(key_list_from_fb(&r.body_as_aws_key_list().unwrap()), keys);
    }
}
