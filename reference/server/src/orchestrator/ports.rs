//! The loopback ports a launcher has given its sessions' dev servers. A port is drawn from the
//! kernel (a bind to port 0) and held until the session's agent has ended, so two sessions of one
//! launcher never get the same port; a port something else takes meanwhile makes the dev server
//! (`--strictPort`) exit, which fails its session with that reason.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The ports handed out and not yet given back.
#[derive(Debug, Default)]
pub struct PreviewPorts {
    taken: Mutex<BTreeSet<u16>>,
}

/// One port, given back when dropped.
#[derive(Debug)]
pub struct PortLease {
    pub port: u16,
    ports: Arc<PreviewPorts>,
}

impl PreviewPorts {
    /// A loopback port free now and handed out to no other session of this launcher.
    pub fn take(self: &Arc<Self>) -> std::io::Result<PortLease> {
        for _ in 0..64 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if self.lock().insert(port) {
                return Ok(PortLease { port, ports: self.clone() });
            }
        }
        Err(std::io::Error::other("no loopback port free of other sessions after 64 tries"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.ports.lock().remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_held_until_its_lease_is_dropped() {
        let ports = Arc::new(PreviewPorts::default());
        let leases: Vec<PortLease> = (0..20).map(|_| ports.take().unwrap()).collect();
        let held: BTreeSet<u16> = leases.iter().map(|l| l.port).collect();
        assert_eq!(held.len(), 20, "no port twice");
        assert_eq!(*ports.lock(), held);
        drop(leases);
        assert!(ports.lock().is_empty(), "given back");
    }
}
