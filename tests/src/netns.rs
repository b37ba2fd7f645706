//! Real network partitions between zones: one Linux network namespace per
//! zone, created by the test itself, so a test can cut a zone off (or one
//! direction between two zones) in the kernel rather than in a relay.
//!
//! # Layout
//!
//! Per [`ZoneNet`] (names carry the test's pid and a per-process serial, so
//! parallel tests never share anything):
//!
//! ```text
//!   root namespace (test, edge)      hub namespace (router)        zone k
//!   sz<pid>-<serial> ── veth ── root            z<k> ── veth ── hub
//!   R = B.1/32                      H = B.2/32 (on lo)            node k = B.(10+k)/32 (on lo)
//! ```
//!
//! `B` is a /24 of 198.18.0.0/15 (the range RFC 2544 sets aside for
//! network tests) picked from the pid and serial; the next one is tried
//! when the root namespace already routes it. Every zone reaches the others
//! and the root namespace through the hub, which forwards; the root
//! namespace routes `B/24` to the hub. So the test process and the edge
//! agent stay in the root namespace and reach every node at its zone
//! address, and a node's Raft traffic to another zone crosses the hub.
//!
//! # Faults
//!
//! All in the hub, as policy-routing rules (`ip rule ... blackhole`): a
//! rule `from A to B blackhole` drops what A sends to B while B's packets to
//! A still arrive, which is a one-way cut; cutting a zone off entirely
//! drops both directions between it and every other zone and the root
//! namespace (the edge loses it too). Healing deletes the rules. Rules in
//! the hub need only iproute2 (`ip`), which every Linux test machine has;
//! `iptables`/`nft` are often not installed, and the kernel's forwarding
//! lookup drops a blackholed packet silently, as a lost link would.
//!
//! # Latency
//!
//! `tc qdisc add dev hub root netem delay Nms` on each zone's uplink delays
//! what a zone sends by N ms: between two zones N ms each way. When the
//! kernel has no netem (`CONFIG_NET_SCH_NETEM` unset) the zones are linked
//! without added latency and a `skipped:` line says so.
//!
//! # Clean-up
//!
//! Dropping a [`ZoneNet`] deletes its namespaces: deleting the hub deletes
//! every veth pair (each has one end in it), with the root namespace's
//! route. A zone namespace lives on until the last process in it exits, so
//! processes started in a zone must be stopped too ([`crate::Proc`] kills
//! on drop). Namespaces left by a test process that was killed (its pid
//! gone) are deleted by the next [`ZoneNet::create`].
//!
//! [`Layout`] builds every command from the layout alone (unit tests
//! below); [`ZoneNet`] runs them.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use strata_client::tls::DevPki;

/// Prefix of every namespace this module creates.
const PREFIX: &str = "strata";
/// Number of /24 blocks in 198.18.0.0/15.
const BLOCKS: u32 = 512;
/// Priority of the blackhole rules: before the main table (32766).
const RULE_PREF: u32 = 100;

/// One end of a link: the root namespace (test, edge) or zone `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Root,
    Zone(usize),
}

/// A dropped direction: packets from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    pub from: Side,
    pub to: Side,
}

/// Names and addresses of one zone network; builds its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `strata-<pid>-<serial>`: every namespace name starts with it.
    pub tag: String,
    /// The root namespace's end of the hub link (at most 15 bytes).
    pub link: String,
    /// Which /24 of 198.18.0.0/15.
    pub block: u32,
    pub zones: usize,
}

/// An argv: `ip ...` or `ip netns exec NS ...`.
pub type Cmd = Vec<String>;

/// The argv of `line` (words split at whitespace: no argument has any).
fn cmd(line: &str) -> Cmd {
    line.split_whitespace().map(str::to_string).collect()
}

impl Layout {
    pub fn new(pid: u32, serial: u32, block: u32, zones: usize) -> Self {
        assert!(
            (1..=200).contains(&zones),
            "{zones} zones: 1 to 200 fit a /24"
        );
        Self {
            tag: format!("{PREFIX}-{pid}-{serial}"),
            // "sz" + at most 7 digits of pid_max (4194304) + "-" + serial.
            link: format!("sz{pid}-{}", serial % 1000),
            block: block % BLOCKS,
            zones,
        }
    }

    pub fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// Zone `k`'s namespace.
    pub fn zone_ns(&self, k: usize) -> String {
        format!("{}-z{k}", self.tag)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [b2, b3] = [18 + (self.block / 256) as u8, (self.block % 256) as u8];
        Ipv4Addr::new(198, b2, b3, host)
    }

    /// The test's address in the root namespace.
    pub fn root_addr(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// The hub's address (every zone's and the root's next hop).
    pub fn hub_addr(&self) -> Ipv4Addr {
        self.addr(2)
    }

    /// Zone `k`'s node address.
    pub fn node_addr(&self, k: usize) -> Ipv4Addr {
        assert!(k < self.zones, "zone {k} of {}", self.zones);
        self.addr(10 + k as u8)
    }

    pub fn subnet(&self) -> String {
        format!("{}/24", self.addr(0))
    }

    fn side_addr(&self, s: Side) -> Ipv4Addr {
        match s {
            Side::Root => self.root_addr(),
            Side::Zone(k) => self.node_addr(k),
        }
    }

    /// The hub and the root namespace's link to it, with the route to the
    /// zones (which fails, in [`ZoneNet`], if another network holds the
    /// block).
    pub fn setup_root(&self) -> Vec<Cmd> {
        let (hub, link, net) = (self.hub(), &self.link, self.subnet());
        let (r, h) = (self.root_addr(), self.hub_addr());
        // The hub routes between its links (a new namespace does not).
        let mut forward = cmd(&format!("ip netns exec {hub} sh -c"));
        forward.push("echo 1 > /proc/sys/net/ipv4/ip_forward".into());
        vec![
            cmd(&format!("ip netns add {hub}")),
            cmd(&format!("ip -n {hub} link set lo up")),
            cmd(&format!("ip -n {hub} addr add {h}/32 dev lo")),
            forward,
            cmd(&format!(
                "ip link add name {link} type veth peer name root netns {hub}"
            )),
            cmd(&format!("ip -n {hub} link set root up")),
            cmd(&format!("ip -n {hub} route add {r}/32 dev root")),
            cmd(&format!("ip addr add {r}/32 dev {link}")),
            cmd(&format!("ip link set {link} up")),
            cmd(&format!(
                "ip route add {net} via {h} dev {link} onlink src {r}"
            )),
        ]
    }

    /// Zone `k`'s namespace, its uplink to the hub and its routes.
    pub fn setup_zone(&self, k: usize) -> Vec<Cmd> {
        let (hub, ns, net) = (self.hub(), self.zone_ns(k), self.subnet());
        let (n, h) = (self.node_addr(k), self.hub_addr());
        vec![
            cmd(&format!("ip netns add {ns}")),
            cmd(&format!("ip -n {ns} link set lo up")),
            cmd(&format!("ip -n {ns} addr add {n}/32 dev lo")),
            cmd(&format!(
                "ip link add name z{k} netns {hub} type veth peer name hub netns {ns}"
            )),
            cmd(&format!("ip -n {hub} link set z{k} up")),
            cmd(&format!("ip -n {ns} link set hub up")),
            cmd(&format!("ip -n {hub} route add {n}/32 dev z{k}")),
            cmd(&format!(
                "ip -n {ns} route add {net} via {h} dev hub onlink src {n}"
            )),
        ]
    }

    /// Delays what zone `k` sends by `ms` milliseconds.
    pub fn latency(&self, k: usize, ms: u32) -> Cmd {
        let ns = self.zone_ns(k);
        cmd(&format!(
            "ip netns exec {ns} tc qdisc add dev hub root netem delay {ms}ms"
        ))
    }

    /// Adds (`add`) or deletes (`del`) the rule that drops `b`.
    pub fn rule(&self, op: &str, b: Block) -> Cmd {
        let (from, to) = (self.side_addr(b.from), self.side_addr(b.to));
        cmd(&format!(
            "ip -n {} rule {op} from {from}/32 to {to}/32 blackhole pref {RULE_PREF}",
            self.hub()
        ))
    }

    /// Deletes everything: the zones, then the hub (with every veth).
    pub fn teardown(&self) -> Vec<Cmd> {
        let zones = (0..self.zones).map(|k| self.zone_ns(k));
        zones
            .chain([self.hub()])
            .map(|ns| cmd(&format!("ip netns del {ns}")))
            .collect()
    }
}

/// The directions dropped when zone `k` is cut off entirely: to and from
/// every other zone and the root namespace.
pub fn isolation(k: usize, zones: usize) -> Vec<Block> {
    let others = (0..zones)
        .filter(|&j| j != k)
        .map(Side::Zone)
        .chain([Side::Root]);
    let me = Side::Zone(k);
    others
        .flat_map(|o| [Block { from: me, to: o }, Block { from: o, to: me }])
        .collect()
}

/// The pid in a namespace name of this module (`strata-<pid>-...`).
pub fn pid_of(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let (pid, rest) = rest.split_once('-')?;
    // `<serial>-hub`, `<serial>-z<k>` or `<serial>-probe`.
    let (serial, _) = rest.split_once('-')?;
    serial.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Runs `c`; an error names the command and its stderr.
fn run(c: &Cmd) -> Result<()> {
    let out = Command::new(&c[0])
        .args(&c[1..])
        .output()
        .with_context(|| format!("running {}", c.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            c.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn serial() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Why zone namespaces cannot be made here (not root, no `ip`, a sandbox
/// that refuses them), or `None` when they can: tries a namespace holding
/// a veth pair, and deletes it.
pub fn unavailable() -> Option<String> {
    let ns = format!("{PREFIX}-{}-{}-probe", std::process::id(), serial());
    let add = cmd(&format!("ip netns add {ns}"));
    if let Err(e) = run(&add) {
        let cause = e.root_cause();
        let why = match cause.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::NotFound => {
                "`ip` (iproute2) is not installed".to_string()
            }
            _ => {
                format!("cannot create a network namespace ({e:#}); the namespaced tests need root")
            }
        };
        return Some(why);
    }
    let veth = cmd(&format!(
        "ip -n {ns} link add name probe0 type veth peer name probe1"
    ));
    let r = run(&veth);
    let _ = run(&cmd(&format!("ip netns del {ns}")));
    r.err()
        .map(|e| format!("cannot create veth pairs in a namespace ({e:#})"))
}

/// Deletes namespaces of this module whose test process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = pid_of(name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run(&cmd(&format!("ip netns del {name}")));
            }
        }
    }
}

/// A zone network of this test (see the module doc); deleted on drop.
pub struct ZoneNet {
    layout: Layout,
    /// The directions currently dropped.
    blocked: BTreeSet<Block>,
    /// The latency added between zones, if the kernel has netem.
    pub latency_ms: Option<u32>,
}

impl ZoneNet {
    /// Creates `zones` zone namespaces linked through a hub, with
    /// `latency_ms` (0: none) added to what each zone sends. Call
    /// [`unavailable`] first to skip where namespaces cannot be made.
    pub fn create(zones: usize, latency_ms: u32) -> Result<Self> {
        remove_stale();
        let pid = std::process::id();
        let serial = serial();
        let first = pid.wrapping_mul(31).wrapping_add(serial.wrapping_mul(7));
        let mut last = None;
        // Another test network (or a real one) may route the block: the
        // root route's "File exists" then moves on to the next.
        for attempt in 0..8 {
            let layout = Layout::new(pid, serial, first.wrapping_add(attempt), zones);
            let mut net = Self {
                layout,
                blocked: BTreeSet::new(),
                latency_ms: None,
            };
            match net.layout.setup_root().iter().try_for_each(run) {
                Ok(()) => {
                    for k in 0..zones {
                        net.layout.setup_zone(k).iter().try_for_each(run)?;
                    }
                    net.add_latency(latency_ms)?;
                    return Ok(net);
                }
                Err(e) => last = Some(e),
            }
            // Dropping `net` deletes what was made of it.
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt made")))
            .context("setting up the zone network")
    }

    fn add_latency(&mut self, ms: u32) -> Result<()> {
        if ms == 0 {
            return Ok(());
        }
        for k in 0..self.layout.zones {
            if let Err(e) = run(&self.layout.latency(k, ms)) {
                let text = format!("{e:#}");
                if k == 0 && text.contains("qdisc kind is unknown") {
                    println!(
                        "skipped: {ms} ms of latency between zones: this kernel has no tc netem (CONFIG_NET_SCH_NETEM); zones linked without added latency"
                    );
                    return Ok(());
                }
                return Err(e);
            }
        }
        self.latency_ms = Some(ms);
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Zone `k`'s namespace (to start a process in it).
    pub fn netns(&self, k: usize) -> String {
        self.layout.zone_ns(k)
    }

    /// Zone `k`'s node address.
    pub fn node_addr(&self, k: usize) -> Ipv4Addr {
        self.layout.node_addr(k)
    }

    /// Drops the directions `blocks` (those already dropped stay so).
    pub fn block(&mut self, blocks: &[Block]) -> Result<()> {
        for &b in blocks {
            if self.blocked.insert(b) {
                run(&self.layout.rule("add", b))?;
            }
        }
        Ok(())
    }

    /// Cuts zone `k` off entirely: from the other zones and from the root
    /// namespace (the edge and the test), both ways.
    pub fn isolate(&mut self, k: usize) -> Result<()> {
        self.block(&isolation(k, self.layout.zones))
    }

    /// Drops what zone `from` sends to zone `to`; `to` still reaches `from`.
    pub fn cut_one_way(&mut self, from: usize, to: usize) -> Result<()> {
        self.block(&[Block {
            from: Side::Zone(from),
            to: Side::Zone(to),
        }])
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<()> {
        while let Some(b) = self.blocked.pop_first() {
            run(&self.layout.rule("del", b))?;
        }
        Ok(())
    }
}

impl Drop for ZoneNet {
    fn drop(&mut self) {
        for c in self.layout.teardown() {
            // A namespace never made (a failed set-up) is not an error here.
            let _ = run(&c);
        }
    }
}

/// Re-issues the dev PKI's node certificate (`node.pem`, the client port
/// of every node) and node `id`'s peer certificate for each of `nodes`
/// (`peer-ID.pem`) so they also name `ips`: clients and peers check the
/// server's certificate against the IP they dial, and the dev certificates
/// name loopback only. Same profile as [`DevPki`]'s, from the same CA.
pub fn issue_zone_certs(pki: &DevPki, nodes: &[u64], ips: &[Ipv4Addr]) -> Result<()> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    use strata_runtime::identity::{NODE_URI_PREFIX, PRINCIPAL_URI_PREFIX};
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let issuer =
        Issuer::from_ca_cert_pem(&read(&pki.ca)?, KeyPair::from_pem(&read(&pki.ca_key)?)?)?;
    let hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_string)
        .chain(ips.iter().map(Ipv4Addr::to_string))
        .collect();
    let issue = |cn: String, uri: String, cert: &std::path::Path, key: &std::path::Path| {
        let mut params = CertificateParams::new(hosts.clone())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into()?));
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let pair = KeyPair::generate()?;
        let signed = params.signed_by(&pair, &issuer)?;
        write_private(key, &pair.serialize_pem())?;
        std::fs::write(cert, signed.pem()).with_context(|| format!("writing {}", cert.display()))
    };
    issue(
        "node".into(),
        format!("{PRINCIPAL_URI_PREFIX}node"),
        &pki.cert,
        &pki.key,
    )?;
    let dir = pki.ca.parent().unwrap_or(std::path::Path::new("."));
    for id in nodes {
        issue(
            format!("node-{id}"),
            format!("{NODE_URI_PREFIX}{id}"),
            &dir.join(format!("peer-{id}.pem")),
            &dir.join(format!("peer-{id}-key.pem")),
        )?;
    }
    Ok(())
}

/// Writes a private key file, readable by its owner only (the daemons
/// refuse a key others can read).
fn write_private(path: &std::path::Path, pem: &str) -> Result<()> {
    strata_runtime::tls::write_private(path, pem)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(cmds: &[Cmd]) -> Vec<String> {
        cmds.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn names_are_unique_per_test_and_fit_interface_limits() {
        let l = Layout::new(4_194_304, 999, 3, 3);
        assert_eq!(l.hub(), "strata-4194304-999-hub");
        assert_eq!(l.zone_ns(2), "strata-4194304-999-z2");
        assert!(l.link.len() <= 15, "{}", l.link);
        assert_ne!(Layout::new(1, 0, 0, 3).link, Layout::new(1, 1, 0, 3).link);
        assert_eq!(pid_of(&l.hub()), Some(4_194_304));
        assert_eq!(pid_of(&l.zone_ns(0)), Some(4_194_304));
        assert_eq!(pid_of("strata-12-3-probe"), Some(12));
        assert_eq!(pid_of("other-12-3-hub"), None);
        assert_eq!(pid_of("strata-x-3-hub"), None);
    }

    #[test]
    fn addresses_come_from_one_block_of_the_test_range() {
        let l = Layout::new(1, 0, 257, 3);
        assert_eq!(l.subnet(), "198.19.1.0/24");
        assert_eq!(l.root_addr(), Ipv4Addr::new(198, 19, 1, 1));
        assert_eq!(l.hub_addr(), Ipv4Addr::new(198, 19, 1, 2));
        assert_eq!(l.node_addr(2), Ipv4Addr::new(198, 19, 1, 12));
        assert_eq!(Layout::new(1, 0, 512 + 4, 3).subnet(), "198.18.4.0/24");
    }

    #[test]
    fn zones_route_through_the_hub() {
        let l = Layout::new(7, 1, 0, 3);
        let root = joined(&l.setup_root());
        assert!(root.contains(
            &"ip link add name sz7-1 type veth peer name root netns strata-7-1-hub".into()
        ));
        assert!(root.contains(
            &"ip route add 198.18.0.0/24 via 198.18.0.2 dev sz7-1 onlink src 198.18.0.1".into()
        ));
        let z = joined(&l.setup_zone(1));
        assert_eq!(z[0], "ip netns add strata-7-1-z1");
        assert!(z.contains(
            &"ip link add name z1 netns strata-7-1-hub type veth peer name hub netns strata-7-1-z1"
                .into()
        ));
        assert!(z.contains(&"ip -n strata-7-1-hub route add 198.18.0.11/32 dev z1".into()));
        assert!(z.contains(&"ip -n strata-7-1-z1 route add 198.18.0.0/24 via 198.18.0.2 dev hub onlink src 198.18.0.11".into()));
        assert_eq!(
            l.latency(0, 2).join(" "),
            "ip netns exec strata-7-1-z0 tc qdisc add dev hub root netem delay 2ms"
        );
        assert_eq!(
            joined(&l.teardown()),
            [
                "ip netns del strata-7-1-z0",
                "ip netns del strata-7-1-z1",
                "ip netns del strata-7-1-z2",
                "ip netns del strata-7-1-hub"
            ]
        );
    }

    #[test]
    fn a_one_way_cut_is_one_rule_in_the_hub() {
        let l = Layout::new(7, 1, 0, 3);
        let b = Block {
            from: Side::Zone(0),
            to: Side::Zone(2),
        };
        assert_eq!(
            l.rule("add", b).join(" "),
            "ip -n strata-7-1-hub rule add from 198.18.0.10/32 to 198.18.0.12/32 blackhole pref 100"
        );
    }

    #[test]
    fn isolating_a_zone_drops_both_ways_to_every_other_zone_and_the_root() {
        let got: BTreeSet<Block> = isolation(1, 3).into_iter().collect();
        let z = Side::Zone;
        let want: BTreeSet<Block> = [
            (z(1), z(0)),
            (z(0), z(1)),
            (z(1), z(2)),
            (z(2), z(1)),
            (z(1), Side::Root),
            (Side::Root, z(1)),
        ]
        .into_iter()
        .map(|(from, to)| Block { from, to })
        .collect();
        assert_eq!(got, want);
    }
}
