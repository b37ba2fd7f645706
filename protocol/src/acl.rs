//! Access rules: who may do what to which streams. The rules live in the
//! core's replicated catalog; edge agents keep a copy and enforce the same
//! decision ([`Acl::authorize`]) for the devices that produce to them.
//!
//! Default deny. A request is allowed when the caller is a superuser (a
//! daemon setting, e.g. the dev admin identity) or some rule matches its
//! principal (glob), its operation and its stream (glob). A `produce` rule
//! may carry a key prefix in which `${principal}` stands for the caller's
//! name: the caller may then write only records whose partition key starts
//! with that prefix (a device writes only under its own name).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Write records (to an edge, or an edge forwarding to the core).
    Produce,
    /// Read records, join consumer groups and commit their checkpoints.
    Consume,
    /// Describe and list streams and groups, seek.
    Describe,
    /// Create streams.
    Create,
    /// Reshard, change retention, restore, manage consumer groups.
    Alter,
    /// Cluster membership, node drains, access rules, AWS access keys,
    /// deleting streams.
    Admin,
    /// Read the secrets of AWS access keys, to verify Kinesis API
    /// signatures (edge agents).
    Verify,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::Produce,
        Operation::Consume,
        Operation::Describe,
        Operation::Create,
        Operation::Alter,
        Operation::Admin,
        Operation::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Produce => "produce",
            Operation::Consume => "consume",
            Operation::Describe => "describe",
            Operation::Create => "create",
            Operation::Alter => "alter",
            Operation::Admin => "admin",
            Operation::Verify => "verify",
        }
    }

    /// One bit per operation, for the wire.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Operations of a bit set (unknown bits are ignored).
    pub fn from_bits(bits: u16) -> Vec<Operation> {
        Self::ALL
            .into_iter()
            .filter(|o| bits & o.bit() != 0)
            .collect()
    }

    pub fn bits(ops: &[Operation]) -> u16 {
        ops.iter().fold(0, |b, o| b | o.bit())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule or operation list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "unknown operation {0:?}; use produce, consume, describe, create, alter, admin, verify or all"
    )]
    UnknownOperation(String),
    #[error("a rule needs at least one operation")]
    NoOperation,
    #[error("{what} pattern {pattern:?} is not a valid glob: {detail}")]
    Pattern {
        what: &'static str,
        pattern: String,
        detail: String,
    },
    #[error("{what} pattern must be 1 to 256 characters")]
    PatternLength { what: &'static str },
    #[error("a key prefix applies to produce only; give --allow produce alone with --key-prefix")]
    KeyPrefixScope,
}

/// Parses `produce,consume` (or `all`) into operations.
pub fn parse_operations(s: &str) -> Result<Vec<Operation>, RuleError> {
    let mut ops = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            ops.extend(Operation::ALL);
            continue;
        }
        let op = Operation::ALL
            .into_iter()
            .find(|o| o.name() == part)
            .ok_or_else(|| RuleError::UnknownOperation(part.to_string()))?;
        ops.push(op);
    }
    ops.sort();
    ops.dedup();
    if ops.is_empty() {
        return Err(RuleError::NoOperation);
    }
    Ok(ops)
}

/// One allow rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Assigned by the catalog when the rule is added.
    pub id: u64,
    /// Glob over principal names (`*`, `?`, `[a-z]`).
    pub principal: String,
    pub operations: Vec<Operation>,
    /// Glob over stream names.
    pub stream: String,
    /// With `produce`: written keys must start with this (after
    /// `${principal}` is replaced by the caller's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

const PRINCIPAL_VAR: &str = "${principal}";

fn check_pattern(what: &'static str, p: &str) -> Result<(), RuleError> {
    if p.is_empty() || p.len() > 256 {
        return Err(RuleError::PatternLength { what });
    }
    glob::Pattern::new(p).map_err(|e| RuleError::Pattern {
        what,
        pattern: p.to_string(),
        detail: e.to_string(),
    })?;
    Ok(())
}

fn glob_matches(pattern: &str, s: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(s))
}

impl Rule {
    /// Checks a rule before it is added.
    pub fn validate(&self) -> Result<(), RuleError> {
        check_pattern("principal", &self.principal)?;
        check_pattern("stream", &self.stream)?;
        if self.operations.is_empty() {
            return Err(RuleError::NoOperation);
        }
        if self.key_prefix.is_some() && self.operations != [Operation::Produce] {
            return Err(RuleError::KeyPrefixScope);
        }
        Ok(())
    }

    fn matches(&self, principal: &str, op: Operation, stream: &str) -> bool {
        self.operations.contains(&op)
            && glob_matches(&self.principal, principal)
            && glob_matches(&self.stream, stream)
    }

    /// The key prefix for `principal`, `${principal}` expanded.
    pub fn prefix_for(&self, principal: &str) -> Option<String> {
        self.key_prefix
            .as_ref()
            .map(|p| p.replace(PRINCIPAL_VAR, principal))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("principal {principal:?} may not {operation} on stream {stream:?}")]
    Operation {
        principal: String,
        operation: Operation,
        stream: String,
    },
    #[error("principal {principal:?} may write to stream {stream:?} only keys starting with {allowed:?}, not {key:?}")]
    Key {
        principal: String,
        stream: String,
        key: String,
        allowed: Vec<String>,
    },
}

/// What an allowed request may do: everything, or (produce) only keys
/// with one of these prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    All,
    KeyPrefixes(Vec<String>),
}

impl Grant {
    /// Checks one record key against the grant.
    pub fn check_key(&self, principal: &str, stream: &str, key: &str) -> Result<(), Denied> {
        match self {
            Grant::All => Ok(()),
            Grant::KeyPrefixes(p) if p.iter().any(|p| key.starts_with(p.as_str())) => Ok(()),
            Grant::KeyPrefixes(p) => Err(Denied::Key {
                principal: principal.to_string(),
                stream: stream.to_string(),
                key: key.to_string(),
                allowed: p.clone(),
            }),
        }
    }
}

/// The rules in force, with the superusers of the daemon deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub rules: Vec<Rule>,
    /// Raised by every change; edges compare it to know they are current.
    pub version: u64,
}

impl Acl {
    /// Decides whether `principal` may do `op` on `stream` (for cluster-wide
    /// operations pass `*`). Superusers may do everything.
    pub fn authorize(
        &self,
        superusers: &[String],
        principal: &str,
        op: Operation,
        stream: &str,
    ) -> Result<Grant, Denied> {
        if superusers.iter().any(|s| s == principal) {
            return Ok(Grant::All);
        }
        let mut prefixes = Vec::new();
        for r in self
            .rules
            .iter()
            .filter(|r| r.matches(principal, op, stream))
        {
            match r.prefix_for(principal) {
                None => return Ok(Grant::All),
                Some(p) => prefixes.push(p),
            }
        }
        if prefixes.is_empty() {
            return Err(Denied::Operation {
                principal: principal.to_string(),
                operation: op,
                stream: stream.to_string(),
            });
        }
        Ok(Grant::KeyPrefixes(prefixes))
    }

    /// Adds a validated rule under the next id; returns the id.
    pub fn add(&mut self, mut rule: Rule) -> Result<u64, RuleError> {
        rule.validate()?;
        rule.id = self.rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let id = rule.id;
        self.rules.push(rule);
        self.version += 1;
        Ok(id)
    }

    /// Removes rule `id`; returns whether it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        let removed = self.rules.len() != before;
        if removed {
            self.version += 1;
        }
        removed
    }
}

/// A rule as the wire carries it (`AclRule`).
pub fn rule_to_fb<'b>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'b>,
    r: &Rule,
) -> flatbuffers::WIPOffset<strata_schema::fb::AclRule<'b>> {
    let principal = Some(fbb.create_string(&r.principal));
    let stream = Some(fbb.create_string(&r.stream));
    let key_prefix = r.key_prefix.as_deref().map(|k| fbb.create_string(k));
    strata_schema::fb::AclRule::create(
        fbb,
        &strata_schema::fb::AclRuleArgs {
            id: r.id,
            principal,
            operations: Operation::bits(&r.operations),
            stream,
            key_prefix,
        },
    )
}

/// A rule from the wire (unknown operation bits are dropped).
pub fn rule_from_fb(r: &strata_schema::fb::AclRule<'_>) -> Rule {
    Rule {
        id: r.id(),
        principal: r.principal().to_string(),
        operations: Operation::from_bits(r.operations()),
        stream: r.stream().to_string(),
        key_prefix: r.key_prefix().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, ops: &str, stream: &str, key: Option<&str>) -> Rule {
        Rule {
            id: 0,
            principal: principal.into(),
            operations: parse_operations(ops).unwrap(),
            stream: stream.into(),
            key_prefix: key.map(str::to_string),
        }
    }

    fn acl(rules: Vec<Rule>) -> Acl {
        let mut a = Acl::default();
        for r in rules {
            a.add(r).unwrap();
        }
        a
    }

    #[test]
    fn default_deny_and_superusers_may_do_everything() {
        let a = Acl::default();
        let su = vec!["admin".to_string()];
        assert_eq!(
            a.authorize(&su, "admin", Operation::Admin, "*"),
            Ok(Grant::All)
        );
        let e = a
            .authorize(&su, "sensor-1", Operation::Describe, "telemetry")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "principal \"sensor-1\" may not describe on stream \"telemetry\""
        );
    }

    #[test]
    fn a_device_writes_only_its_own_keys_of_its_stream() {
        let a = acl(vec![rule(
            "sensor-*",
            "produce",
            "telemetry",
            Some("${principal}"),
        )]);
        let g = a
            .authorize(&[], "sensor-7", Operation::Produce, "telemetry")
            .unwrap();
        assert_eq!(g, Grant::KeyPrefixes(vec!["sensor-7".into()]));
        assert!(g
            .check_key("sensor-7", "telemetry", "sensor-7/temp")
            .is_ok());
        let e = g
            .check_key("sensor-7", "telemetry", "sensor-8/temp")
            .unwrap_err();
        assert!(matches!(e, Denied::Key { .. }), "{e}");
        assert!(e.to_string().contains("sensor-8/temp"), "{e}");
        for (op, stream) in [
            (Operation::Produce, "billing"),
            (Operation::Consume, "telemetry"),
            (Operation::Create, "telemetry"),
            (Operation::Alter, "telemetry"),
            (Operation::Admin, "*"),
        ] {
            assert!(
                a.authorize(&[], "sensor-7", op, stream).is_err(),
                "{op} on {stream}"
            );
        }
        assert!(a
            .authorize(&[], "dashboard", Operation::Produce, "telemetry")
            .is_err());
    }

    #[test]
    fn an_unconstrained_rule_wins_over_a_key_prefix() {
        let a = acl(vec![
            rule("edge-*", "produce", "*", Some("${principal}/")),
            rule("edge-1", "produce,describe", "tele*", None),
        ]);
        assert_eq!(
            a.authorize(&[], "edge-1", Operation::Produce, "telemetry"),
            Ok(Grant::All)
        );
        assert_eq!(
            a.authorize(&[], "edge-1", Operation::Produce, "logs"),
            Ok(Grant::KeyPrefixes(vec!["edge-1/".into()]))
        );
        // A cluster-wide question ("*") matches only a rule for every stream.
        assert!(a
            .authorize(&[], "edge-1", Operation::Describe, "*")
            .is_err());
    }

    #[test]
    fn rules_are_validated_and_removed_by_id() {
        assert_eq!(
            parse_operations("produce,bogus"),
            Err(RuleError::UnknownOperation("bogus".into()))
        );
        assert_eq!(parse_operations(" , "), Err(RuleError::NoOperation));
        assert_eq!(parse_operations("all").unwrap().len(), 7);
        let mut a = Acl::default();
        assert!(matches!(
            a.add(rule("[", "produce", "*", None)),
            Err(RuleError::Pattern { .. })
        ));
        assert_eq!(
            a.add(rule("d", "consume", "*", Some("x"))),
            Err(RuleError::KeyPrefixScope)
        );
        assert_eq!(a.version, 0, "refused rules change nothing");
        let id = a.add(rule("d", "consume", "*", None)).unwrap();
        let id2 = a.add(rule("e", "consume", "*", None)).unwrap();
        assert_eq!((id, id2), (1, 2));
        assert!(a.remove(id));
        assert!(!a.remove(id));
        assert_eq!(a.version, 3);
        assert!(a.authorize(&[], "d", Operation::Consume, "s").is_err());
        assert!(a.authorize(&[], "e", Operation::Consume, "s").is_ok());
        assert_eq!(
            Operation::from_bits(Operation::bits(&[Operation::Produce, Operation::Admin])),
            vec![Operation::Produce, Operation::Admin]
        );
    }
}
