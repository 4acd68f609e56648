//! The epoll back end (mio): edge-triggered readiness, `recvmmsg` to read up to [`BATCH`]
//! datagrams per system call and `sendmmsg` to send what one socket received in one call.
//! Buffers are allocated once per worker; nothing is allocated per packet.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::core::{Cmd, Core, Effect, CMD_POLL};
use super::sys;

pub(crate) const BATCH: usize = 32;
const BUF: usize = 2048;
const WAKE: Token = Token(usize::MAX);

struct Bufs {
    data: [[u8; BUF]; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    out_names: [libc::sockaddr_storage; BATCH],
    out_iovs: [libc::iovec; BATCH],
    out_hdrs: [libc::mmsghdr; BATCH],
}

pub(crate) struct EpollIo {
    poll: Poll,
    events: Events,
    bufs: Box<Bufs>,
}

impl EpollIo {
    pub fn new() -> io::Result<(EpollIo, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        // SAFETY: all-zero is a valid value for these plain C structs; pointers are set below.
        let mut bufs: Box<Bufs> = unsafe { Box::new(std::mem::zeroed()) };
        let b = &mut *bufs;
        for i in 0..BATCH {
            b.iovs[i] = libc::iovec {
                iov_base: b.data[i].as_mut_ptr().cast(),
                iov_len: BUF,
            };
            b.hdrs[i].msg_hdr.msg_iov = &mut b.iovs[i];
            b.hdrs[i].msg_hdr.msg_iovlen = 1;
            b.hdrs[i].msg_hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            b.out_hdrs[i].msg_hdr.msg_iov = &mut b.out_iovs[i];
            b.out_hdrs[i].msg_hdr.msg_iovlen = 1;
            b.out_hdrs[i].msg_hdr.msg_name =
                (&mut b.out_names[i] as *mut libc::sockaddr_storage).cast();
        }
        Ok((
            EpollIo {
                poll,
                events: Events::with_capacity(1024),
                bufs,
            },
            waker,
        ))
    }

    /// The worker loop: runs until `Cmd::Shutdown` or the control side goes away.
    pub fn run(mut self, mut core: Core, rx: Receiver<Cmd>) {
        let interval = core.scan_interval();
        let mut next_scan = Instant::now() + interval;
        loop {
            let timeout = next_scan
                .saturating_duration_since(Instant::now())
                .min(CMD_POLL);
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("relay epoll worker: poll failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            // Commands first: a set_remote issued before a packet was read applies to it.
            loop {
                match rx.try_recv() {
                    Ok(cmd) => match core.apply(cmd, now) {
                        Effect::None => {}
                        Effect::Added(slots) => {
                            for s in slots {
                                if let Some(e) = core.sock(s) {
                                    let fd = e.fd;
                                    if let Err(err) = self.poll.registry().register(
                                        &mut SourceFd(&fd),
                                        Token(s as usize),
                                        Interest::READABLE,
                                    ) {
                                        tracing::error!("relay: register socket: {err}");
                                    }
                                }
                            }
                        }
                        Effect::Removed(slots) => {
                            for s in slots {
                                if let Some(e) = core.sock(s) {
                                    let fd = e.fd;
                                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                                }
                                core.free_socket(s);
                            }
                        }
                        Effect::Shutdown => {
                            core.publish();
                            return;
                        }
                    },
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
            let mut woke = false;
            // Split borrows: events are read while buffers are used.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for ev in events.iter() {
                if ev.token() == WAKE {
                    woke = true;
                } else {
                    self.drain(&mut core, ev.token().0 as u32, now);
                }
            }
            self.events = events;
            if woke {
                core.count_wakeup();
            }
            if now >= next_scan {
                core.scan_timeouts(now);
                next_scan = now + interval;
            }
            core.publish();
        }
    }

    /// Read everything pending on socket `slot` (edge-triggered) and forward it.
    fn drain(&mut self, core: &mut Core, slot: u32, now: Instant) {
        let Some(fd) = core.sock(slot).map(|e| e.fd) else {
            return;
        };
        let b = &mut *self.bufs;
        loop {
            for h in b.hdrs.iter_mut() {
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: hdrs point into buffers owned by `b`, valid for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    b.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                return;
            }
            let n = n as usize;
            let mut out = 0usize;
            let mut out_fd: RawFd = -1;
            for i in 0..n {
                let h = &b.hdrs[i];
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    core.count_truncated();
                    continue;
                }
                let len = (h.msg_len as usize).min(BUF);
                let Some(src) = sys::from_sockaddr(&b.names[i], h.msg_hdr.msg_namelen) else {
                    continue;
                };
                let Some(fwd) = core.on_packet(slot, src, &mut b.data[i][..], len, now) else {
                    continue;
                };
                if fwd.fd != out_fd && out > 0 {
                    send_batch(core, out_fd, &mut b.out_hdrs[..out]);
                    out = 0;
                }
                out_fd = fwd.fd;
                let nl = sys::to_sockaddr(&fwd.dst, &mut b.out_names[out]);
                b.out_hdrs[out].msg_hdr.msg_namelen = nl;
                b.out_iovs[out] = libc::iovec {
                    iov_base: b.data[i].as_mut_ptr().cast(),
                    iov_len: fwd.len,
                };
                out += 1;
            }
            if out > 0 {
                send_batch(core, out_fd, &mut b.out_hdrs[..out]);
            }
            // frames a transcoder made beyond one per packet, after the batch (in order)
            core.drain_extra(sys::send_to);
            if n < BATCH {
                // Fewer than asked: the queue is empty; a later datagram raises a new edge.
                return;
            }
        }
    }
}

fn send_batch(core: &mut Core, fd: RawFd, hdrs: &mut [libc::mmsghdr]) {
    let mut done = 0usize;
    let mut retried = false;
    while done < hdrs.len() {
        let rest = &mut hdrs[done..];
        // SAFETY: hdrs point at the worker's buffers, valid for the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            done += r as usize;
            continue;
        }
        // Failed on hdrs[done]: skip that one datagram (e.g. ICMP unreachable reported as
        // ECONNREFUSED, or a full send buffer), retry the rest once.
        core.count_send_error();
        done += 1;
        if retried {
            while done < hdrs.len() {
                core.count_send_error();
                done += 1;
            }
        }
        retried = true;
    }
}
