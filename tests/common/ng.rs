//! The ng control protocol (rtpengine's, bencoded over UDP) as a test client speaks it.
// Only the test binaries that drive the ng port use this.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::time::Duration;

/// A bencoded byte string.
pub fn bstr(s: &str) -> String {
    format!("{}:{s}", s.len())
}

/// An ng request: `cookie`, then a bencoded dictionary of `pairs` (string values).
pub fn ng(cookie: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut d = format!("{cookie} d");
    for (k, v) in pairs {
        d += &bstr(k);
        d += &bstr(v);
    }
    d += "e";
    d.into_bytes()
}

/// The next reply on `sock` within `limit`, as text.
pub fn ng_reply(sock: &UdpSocket, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
