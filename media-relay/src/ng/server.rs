//! Thin UDP shell around [`NgHandler`]: one thread, blocking `recv_from` with a short timeout so
//! it can notice a stop request.

use super::NgHandler;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the server thread checks for a stop request.
const POLL: Duration = Duration::from_millis(100);

/// A running ng server. Stop it with [`NgServer::shutdown`] (dropping it stops it too).
pub struct NgServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Who may send ng commands: loopback always, plus these networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// Loopback only.
    pub fn loopback() -> AllowList {
        AllowList::default()
    }

    /// Loopback and `nets` (network address, prefix length).
    pub fn new(nets: Vec<(IpAddr, u8)>) -> AllowList {
        AllowList { nets }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || self.nets.iter().any(|&(net, len)| in_net(ip, net, len))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// Serve the ng protocol on `socket` (already bound, e.g. `UdpSocket::bind("127.0.0.1:2223")`)
/// on a new thread named `ng`, to loopback sources only. Returns once the thread runs.
pub fn serve(socket: UdpSocket, handler: NgHandler) -> io::Result<NgServer> {
    serve_allowed(socket, handler, AllowList::loopback())
}

/// [`serve`] to the sources `allow` permits; datagrams from others are dropped unanswered
/// (counted in [`NgServer::refused`]).
pub fn serve_allowed(
    socket: UdpSocket,
    mut handler: NgHandler,
    allow: AllowList,
) -> io::Result<NgServer> {
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(POLL))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let refused = Arc::new(AtomicU64::new(0));
    let refused_count = Arc::clone(&refused);
    let thread = std::thread::Builder::new()
        .name("ng".into())
        .spawn(move || {
            // Largest UDP payload: a datagram never exceeds it.
            let mut buf = vec![0u8; 65_535];
            while !flag.load(Ordering::Relaxed) {
                let (n, src) = match socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ng: recv failed");
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                if !allow.permits(src.ip()) {
                    refused_count.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(req) = buf.get(..n) else { continue };
                if let Some(reply) = handler.handle(req, Instant::now()) {
                    if let Err(e) = socket.send_to(&reply, src) {
                        tracing::warn!(error = %e, %src, len = reply.len(), "ng: send failed");
                    }
                }
            }
        })?;
    Ok(NgServer {
        local,
        stop,
        refused,
        thread: Some(thread),
    })
}

impl NgServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams dropped because their source is not allowed.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Stop the server thread and wait for it (at most about 100 ms).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NgServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lo = AllowList::loopback();
        assert!(lo.permits(ip("127.0.0.1")) && lo.permits(ip("127.9.9.9")));
        assert!(lo.permits(ip("::1")) && lo.permits(ip("::ffff:127.0.0.1")));
        assert!(!lo.permits(ip("192.0.2.1")) && !lo.permits(ip("::ffff:192.0.2.1")));
        let a = AllowList::new(vec![(ip("192.0.2.0"), 24), (ip("2001:db8::"), 32)]);
        assert!(a.permits(ip("192.0.2.200")) && a.permits(ip("::ffff:192.0.2.7")));
        assert!(!a.permits(ip("192.0.3.1")));
        assert!(a.permits(ip("2001:db8:1::5")) && !a.permits(ip("2001:db9::1")));
        assert!(a.permits(ip("127.0.0.1")), "loopback always");
        let all = AllowList::new(vec![(ip("0.0.0.0"), 0)]);
        assert!(all.permits(ip("203.0.113.9")));
    }
}
