//! Small libc helpers shared by the back ends: socket address conversion, a single send.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Write `a` into `out`; returns the length to pass to the kernel.
pub(crate) fn to_sockaddr(a: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            sin.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Parse a kernel-filled socket address given as raw bytes (`sockaddr_in` / `sockaddr_in6`).
pub(crate) fn from_sockaddr_bytes(b: &[u8]) -> Option<SocketAddr> {
    let fam = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    if fam == libc::AF_INET {
        let b = b.get(..8)?;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if fam == libc::AF_INET6 {
        let b = b.get(..28)?;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[8..24]);
        let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(o),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

/// Parse a `sockaddr_storage` the kernel filled with `len` bytes.
pub(crate) fn from_sockaddr(
    s: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: reading the initialized bytes of a plain-old-data struct.
    let bytes =
        unsafe { std::slice::from_raw_parts(s as *const libc::sockaddr_storage as *const u8, n) };
    from_sockaddr_bytes(bytes)
}

/// Send one datagram from `fd` to `dst` without blocking; `false` when the kernel refused it.
pub(crate) fn send_to(fd: std::os::fd::RawFd, data: &[u8], dst: SocketAddr) -> bool {
    // SAFETY: zeroed sockaddr_storage is a valid value; filled for `dst` below.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_sockaddr(&dst, &mut name);
    // SAFETY: `data` and `name` are valid for the call; the lengths are theirs.
    let r = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT,
            (&name as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    r >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for a in ["127.0.0.1:40000", "[::1]:5004", "[fe80::1%3]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let n = to_sockaddr(&a, &mut s);
            assert_eq!(from_sockaddr(&s, n), Some(a));
        }
        assert_eq!(from_sockaddr_bytes(&[]), None);
        assert_eq!(from_sockaddr_bytes(&[2, 0, 0]), None);
    }
}
