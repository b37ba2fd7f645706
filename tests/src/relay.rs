//! A UDP relay placed in front of each core node's Raft peer port, so a test
//! can partition a node from the others without root or network namespaces:
//! packets to or from an isolated node are dropped, in both directions.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// Which nodes are cut off; shared by all relays of a cluster.
#[derive(Clone, Default)]
pub struct Partition {
    isolated: Arc<Mutex<HashSet<u64>>>,
    /// Peer bind address → node id, to recognise who sent a packet.
    owners: Arc<Mutex<HashMap<SocketAddr, u64>>>,
}

impl Partition {
    pub fn register(&self, bind: SocketAddr, node: u64) {
        self.owners.lock().unwrap().insert(bind, node);
    }

    pub fn isolate(&self, node: u64) {
        self.isolated.lock().unwrap().insert(node);
    }

    pub fn heal(&self) {
        self.isolated.lock().unwrap().clear();
    }

    fn blocked(&self, target: u64, source: SocketAddr) -> bool {
        let iso = self.isolated.lock().unwrap();
        if iso.contains(&target) {
            return true;
        }
        self.owners
            .lock()
            .unwrap()
            .get(&source)
            .is_some_and(|n| iso.contains(n))
    }
}

/// Starts a relay on a free loopback port forwarding to `target` (node
/// `target_node`'s peer port). Returns the relay's address; the task ends
/// with the runtime.
pub async fn start(
    target: SocketAddr,
    target_node: u64,
    partition: Partition,
) -> std::io::Result<SocketAddr> {
    start_counted(target, target_node, partition, Arc::default()).await
}

/// [`start`], counting the packets forwarded to the target in `forwarded`.
async fn start_counted(
    target: SocketAddr,
    target_node: u64,
    partition: Partition,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<SocketAddr> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = front.local_addr()?;
    tokio::spawn(async move {
        let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, src) = match front.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) if transient(&e) => continue,
                Err(_) => return,
            };
            if partition.blocked(target_node, src) {
                continue;
            }
            let up = match flows.get(&src) {
                Some(u) => u.clone(),
                None => {
                    let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                        continue;
                    };
                    if u.connect(target).await.is_err() {
                        continue;
                    }
                    let u = Arc::new(u);
                    flows.insert(src, u.clone());
                    // Replies from the target back to this flow's source.
                    let (u2, front2, p2) = (u.clone(), front.clone(), partition.clone());
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65536];
                        loop {
                            let m = match u2.recv(&mut b).await {
                                Ok(m) => m,
                                // A packet sent before the target bound its
                                // port comes back as an ICMP error: the flow
                                // must outlive it, or it stays one-way.
                                Err(e) if transient(&e) => continue,
                                Err(_) => return,
                            };
                            if !p2.blocked(target_node, src) {
                                let _ = front2.send_to(&b[..m], src).await;
                            }
                        }
                    });
                    u
                }
            };
            let _ = up.send(&buf[..n]).await;
            forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    Ok(addr)
}

/// Errors a UDP socket reports for an earlier packet (an ICMP port or host
/// unreachable), not for itself: the socket stays usable.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | HostUnreachable | NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A node that sends to a peer not yet listening gets an ICMP error on the
    /// relay's flow; once the peer binds its port, replies must still flow.
    #[tokio::test]
    async fn a_flow_survives_packets_sent_before_the_target_listens() {
        let target = crate::free_udp_addr();
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let relay = start_counted(target, 1, Partition::default(), forwarded.clone())
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // As a QUIC handshake retries: each early packet reaches the closed
        // port and is answered by an ICMP error.
        for sent in 1..=3 {
            client.send_to(b"early", relay).await.unwrap();
            crate::wait_for("the relay to forward", Duration::from_secs(5), || {
                let n = forwarded.load(std::sync::atomic::Ordering::SeqCst);
                async move { Ok((n >= sent).then_some(())) }
            })
            .await
            .unwrap();
        }
        // The port was really closed: a probe of it gets the ICMP error too.
        let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        probe.connect(target).await.unwrap();
        probe.send(b"probe").await.unwrap();
        let mut b = [0u8; 8];
        let refused = tokio::time::timeout(Duration::from_secs(5), probe.recv(&mut b)).await;
        assert!(
            matches!(&refused, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{refused:?}"
        );

        let server = UdpSocket::bind(target).await.unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, from)) = server.recv_from(&mut b).await {
                let _ = server.send_to(&b[..n], from).await;
            }
        });
        for round in 0..3u8 {
            let echoed = tokio::time::timeout(Duration::from_secs(5), async {
                let mut b = [0u8; 64];
                loop {
                    client.send_to(&[round], relay).await.unwrap();
                    let got =
                        tokio::time::timeout(Duration::from_millis(200), client.recv(&mut b)).await;
                    if let Ok(Ok(n)) = got {
                        if b[..n] == [round] {
                            return;
                        }
                    }
                }
            })
            .await;
            assert!(echoed.is_ok(), "round {round}: no reply through the relay");
        }
    }
}
