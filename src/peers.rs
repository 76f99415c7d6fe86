//! Open connections per peer address, for the listeners' per-peer caps (one
//! sender must not take every connection slot).

/// Open connections per peer address.
#[derive(Clone, Default)]
pub struct PeerCounts(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
);

/// One claimed connection of a peer; released when dropped.
pub struct PeerSlot {
    counts: PeerCounts,
    ip: std::net::IpAddr,
}

impl PeerCounts {
    /// A slot for one more connection from `ip`, or `None` when it holds
    /// `max` already.
    pub fn claim(&self, ip: std::net::IpAddr, max: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
