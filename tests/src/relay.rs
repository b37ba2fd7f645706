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
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = front.local_addr()?;
    tokio::spawn(async move {
        let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, src)) = front.recv_from(&mut buf).await else {
                return;
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
                        while let Ok(m) = u2.recv(&mut b).await {
                            if !p2.blocked(target_node, src) {
                                let _ = front2.send_to(&b[..m], src).await;
                            }
                        }
                    });
                    u
                }
            };
            let _ = up.send(&buf[..n]).await;
        }
    });
    Ok(addr)
}
