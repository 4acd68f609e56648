//! Thin UDP shell around [`NgHandler`]: one thread, blocking `recv_from` with a short timeout so
//! it can notice a stop request.

use super::NgHandler;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the server thread checks for a stop request.
const POLL: Duration = Duration::from_millis(100);

/// A running ng server. Stop it with [`NgServer::shutdown`] (dropping it stops it too).
pub struct NgServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Serve the ng protocol on `socket` (already bound, e.g. `UdpSocket::bind("127.0.0.1:2223")`)
/// on a new thread named `ng`. Returns once the thread runs.
pub fn serve(socket: UdpSocket, mut handler: NgHandler) -> io::Result<NgServer> {
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(POLL))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
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
        thread: Some(thread),
    })
}

impl NgServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
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
