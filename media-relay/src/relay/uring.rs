//! The io_uring back end: one ring per worker thread.
//!
//! * Receive: one multishot `IORING_OP_RECVMSG` per socket (`IORING_RECV_MULTISHOT`, Linux 6.0)
//!   drawing from a provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): the kernel
//!   picks a buffer per datagram and posts a completion; the socket stays armed.
//! * Send: the received buffer is sent as is (`IORING_OP_SENDMSG`, no copy); every send found in
//!   one pass over the completion queue goes to the kernel in the next `io_uring_enter`, so one
//!   system call carries many sends and collects many receives.
//! * Buffers return to the ring when their send completes.
//! * Wake-up: an eventfd read armed in the ring; the control side writes the eventfd.
//! * Close: the multishot receive is cancelled (`IORING_OP_ASYNC_CANCEL`); the socket is closed
//!   when its final completion arrives (an armed request holds a file reference, so closing the
//!   fd earlier would leave the port bound).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use io_uring::types::{BufRingEntry, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use super::core::{Cmd, Core, Effect, CMD_POLL};
use super::sys;

/// Provided buffers per worker.
const NBUF: u16 = 4096;
/// Size of one provided buffer: recvmsg_out header (16) + name (28) + payload.
const BUF: usize = 2048;
const BGID: u16 = 7;
const SQ_ENTRIES: u32 = 2048;
const CQ_ENTRIES: u32 = 16384;

/// Completions to wait for before waking up when batching.
const BATCH_WANT: usize = 64;
/// Completions per second (per worker) above which batching is used.
const BATCH_MIN_PPS: u64 = 10_000;

const TAG_SHIFT: u32 = 56;
const TAG_RECV: u64 = 1 << TAG_SHIFT;
const TAG_SEND: u64 = 2 << TAG_SHIFT;
const TAG_WAKE: u64 = 3 << TAG_SHIFT;
const TAG_CANCEL: u64 = 4 << TAG_SHIFT;
const TAG_MASK: u64 = 0xff << TAG_SHIFT;

/// A provided-buffer ring (`struct io_uring_buf_ring`) in page-aligned anonymous memory.
struct BufRing {
    ptr: *mut BufRingEntry,
    map_len: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn new(entries: u16) -> io::Result<BufRing> {
        let map_len = entries as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            ptr: p.cast(),
            map_len,
            mask: entries - 1,
            tail: 0,
        })
    }

    /// Queue buffer `bid` (not visible to the kernel until [`publish`](Self::publish)).
    fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        // SAFETY: index is masked into the mapping.
        let e = unsafe { &mut *self.ptr.add((self.tail & self.mask) as usize) };
        e.set_addr(addr as u64);
        e.set_len(len);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry (`resv`), u16-aligned; the kernel
        // reads it with acquire semantics.
        unsafe {
            let t = BufRingEntry::tail(self.ptr) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; the ring using it is dropped before (field order).
        unsafe {
            libc::munmap(self.ptr.cast(), self.map_len);
        }
    }
}

fn ring_builder() -> io::Result<IoUring> {
    // Deferred task running (6.1): completions are produced only when this thread enters the
    // kernel to wait, which batches work; fall back to a plain ring on older kernels.
    let mut b = IoUring::builder();
    b.setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun();
    match b.build(SQ_ENTRIES) {
        Ok(r) => Ok(r),
        Err(_) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES),
    }
}

/// Check that this kernel lets us use what the back end needs: a ring (refused under seccomp or
/// `kernel.io_uring_disabled`), the opcodes, `EXT_ARG` waits, a provided buffer ring, and a
/// working multishot recvmsg (a datagram to ourselves over loopback).
pub(crate) fn probe() -> io::Result<()> {
    let mut ring = IoUring::new(8)?;
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p)?;
    for (op, name) in [
        (opcode::RecvMsg::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::Read::CODE, "read"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
    ] {
        if !p.is_supported(op) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring op {name} unsupported"),
            ));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring EXT_ARG unsupported",
        ));
    }
    let mut br = BufRing::new(4)?;
    let mut mem = vec![0u8; 4 * 256];
    // SAFETY: the ring memory outlives the registration (unregistered below / ring dropped first).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(br.ptr as u64, 4, 1, 0)?
    };
    for i in 0..4u16 {
        let a = mem[i as usize * 256..].as_mut_ptr();
        br.push(a, 256, i);
    }
    br.publish();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_nonblocking(true)?;
    // SAFETY: zeroed msghdr is valid; only namelen is used by multishot recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    let e = opcode::RecvMsgMulti::new(Fd(sock.as_raw_fd()), &msg, 1)
        .build()
        .user_data(1);
    // SAFETY: msg and the buffers outlive the operation (we wait for it below).
    unsafe {
        ring.submission()
            .push(&e)
            .map_err(|_| io::Error::other("sq full"))?
    };
    ring.submit()?;
    sock.send_to(b"probe", sock.local_addr()?)?;
    let ts = Timespec::from(Duration::from_secs(1));
    let args = SubmitArgs::new().timespec(&ts);
    let _ = ring.submitter().submit_with_args(1, &args);
    let cqe = ring.completion().next();
    let result = match cqe {
        Some(c) if c.result() > 0 && cqueue::buffer_select(c.flags()).is_some() => Ok(()),
        Some(c) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "multishot recvmsg failed: {}",
                io::Error::from_raw_os_error(-c.result())
            ),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "multishot recvmsg: no completion",
        )),
    };
    // Tear down: drop the ring (cancels the armed request) before the memory goes.
    drop(ring);
    drop(mem);
    drop(br);
    result
}

#[derive(Clone, Copy, Default)]
struct SlotState {
    armed: bool,
    closing: bool,
    /// The socket is in the ring's registered file table at index = slot (no per-operation
    /// fget/fput).
    fixed: bool,
}

/// Upper bound of the registered file table (further limited by RLIMIT_NOFILE).
const MAX_FIXED: u32 = 32768;

pub(crate) struct UringIo {
    // Field order matters for Drop: the ring goes first, then the memory it points into.
    ring: IoUring,
    br: BufRing,
    bufs: Box<[u8]>,
    recv_msg: Box<libc::msghdr>,
    send_names: Box<[libc::sockaddr_storage]>,
    send_iovs: Box<[libc::iovec]>,
    send_msgs: Box<[libc::msghdr]>,
    efd: Arc<OwnedFd>,
    efd_buf: Box<u64>,
    slots: Vec<SlotState>,
    rearm: Vec<u32>,
    deferred_free: Vec<u32>,
    cqes: Vec<(u64, i32, u32)>,
    /// min_wait in microseconds; 0 = wake on every completion.
    batch_us: u32,
    /// Size of the sparse registered file table (0 = not available).
    fixed_cap: u32,
}

impl UringIo {
    /// `batch_us`: completion batching delay (see `RelayTuning::io_uring_batch_us`).
    pub fn new(batch_us: u32) -> io::Result<(UringIo, Arc<OwnedFd>)> {
        let ring = ring_builder()?;
        let br = BufRing::new(NBUF)?;
        let bufs = vec![0u8; NBUF as usize * BUF].into_boxed_slice();
        // SAFETY: zeroed C structs are valid; pointers filled before use.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
        let send_names = (0..NBUF)
            // SAFETY: as above.
            .map(|_| unsafe { std::mem::zeroed::<libc::sockaddr_storage>() })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let send_iovs = (0..NBUF)
            .map(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let send_msgs = (0..NBUF)
            // SAFETY: as above.
            .map(|_| unsafe { std::mem::zeroed::<libc::msghdr>() })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // SAFETY: eventfd returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let efd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let mut io = UringIo {
            ring,
            br,
            bufs,
            recv_msg,
            send_names,
            send_iovs,
            send_msgs,
            efd: efd.clone(),
            efd_buf: Box::new(0),
            slots: Vec::new(),
            rearm: Vec::new(),
            deferred_free: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            batch_us: 0,
            fixed_cap: 0,
        };
        // Registered files: sockets are looked up by index instead of fget/fput per operation.
        // SAFETY: getrlimit fills the struct.
        let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        let cap = (rl.rlim_cur.min(MAX_FIXED as u64)) as u32;
        if cap > 0 && io.ring.submitter().register_files_sparse(cap).is_ok() {
            io.fixed_cap = cap;
        }
        if io.ring.params().is_feature_min_timeout() {
            io.batch_us = batch_us;
        }
        // SAFETY: the buffer ring memory lives as long as the ring (dropped after it).
        unsafe {
            io.ring
                .submitter()
                .register_buf_ring_with_flags(io.br.ptr as u64, NBUF, BGID, 0)?;
        }
        for i in 0..NBUF {
            io.recycle(i);
        }
        io.br.publish();
        for i in 0..NBUF as usize {
            io.send_msgs[i].msg_name =
                (&mut io.send_names[i] as *mut libc::sockaddr_storage).cast();
            io.send_msgs[i].msg_iov = &mut io.send_iovs[i];
            io.send_msgs[i].msg_iovlen = 1;
        }
        io.arm_wake()?;
        Ok((io, efd))
    }

    fn recycle(&mut self, bid: u16) {
        let addr = self.bufs[bid as usize * BUF..].as_mut_ptr();
        self.br.push(addr, BUF as u32, bid);
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry points at memory owned by `self` that outlives the operation.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let buf: *mut u64 = &mut *self.efd_buf;
        let e = opcode::Read::new(Fd(self.efd.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(TAG_WAKE);
        self.push(e)
    }

    fn arm_recv(&mut self, core: &Core, slot: u32) {
        let Some(fd) = core.sock(slot).map(|s| s.fd) else {
            return;
        };
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, SlotState::default());
        }
        if self.slots[i].armed || self.slots[i].closing {
            return;
        }
        if !self.slots[i].fixed
            && slot < self.fixed_cap
            && self
                .ring
                .submitter()
                .register_files_update(slot, &[fd])
                .is_ok()
        {
            self.slots[i].fixed = true;
        }
        let e = if self.slots[i].fixed {
            opcode::RecvMsgMulti::new(Fixed(slot), &*self.recv_msg, BGID).build()
        } else {
            opcode::RecvMsgMulti::new(Fd(fd), &*self.recv_msg, BGID).build()
        }
        .user_data(TAG_RECV | slot as u64);
        if self.push(e).is_ok() {
            self.slots[i].armed = true;
        }
    }

    /// Forget a slot's state and drop its registered-file entry.
    fn release_slot(&mut self, slot: u32) {
        if let Some(st) = self.slots.get_mut(slot as usize) {
            if st.fixed {
                let _ = self.ring.submitter().register_files_update(slot, &[-1]);
            }
            *st = SlotState::default();
        }
    }

    fn close_slot(&mut self, slot: u32) {
        let i = slot as usize;
        let st = self.slots.get(i).copied().unwrap_or_default();
        if st.armed {
            if let Some(s) = self.slots.get_mut(i) {
                s.closing = true;
            }
            let e = opcode::AsyncCancel::new(TAG_RECV | slot as u64)
                .build()
                .user_data(TAG_CANCEL | slot as u64);
            let _ = self.push(e);
        } else {
            // Not armed: nothing in flight. Freed after this batch of completions so the slot
            // is not reused while completions of the old socket are still being handled.
            if let Some(s) = self.slots.get_mut(i) {
                s.closing = true;
            }
            self.deferred_free.push(slot);
        }
    }

    /// Apply pending commands; `false` on shutdown.
    fn commands(&mut self, core: &mut Core, rx: &Receiver<Cmd>, now: Instant) -> bool {
        loop {
            match rx.try_recv() {
                Ok(cmd) => match core.apply(cmd, now) {
                    Effect::None => {}
                    Effect::Added(slots) => {
                        for s in slots {
                            if let Some(st) = self.slots.get_mut(s as usize) {
                                *st = SlotState::default();
                            }
                            self.arm_recv(core, s);
                        }
                    }
                    Effect::Removed(slots) => {
                        for s in slots {
                            self.close_slot(s);
                        }
                    }
                    Effect::Shutdown => return false,
                },
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }

    pub fn run(mut self, mut core: Core, rx: Receiver<Cmd>) {
        let interval = core.scan_interval();
        let mut next_scan = Instant::now() + interval;
        let mut win_start = Instant::now();
        let mut win_pkts = 0u64;
        let mut batching = false;
        loop {
            let now = Instant::now();
            if !self.commands(&mut core, &rx, now) {
                core.publish();
                return;
            }
            if now >= next_scan {
                core.scan_timeouts(now);
                next_scan = now + interval;
            }
            core.publish();
            let wait = next_scan
                .saturating_duration_since(Instant::now())
                .min(CMD_POLL);
            let ts = Timespec::from(wait.max(Duration::from_micros(100)));
            let args = SubmitArgs::new().timespec(&ts);
            // Completion batching (Linux 6.12 min_wait): sleep until `BATCH_WANT` completions,
            // or `batch_us` after the first one, whichever comes first. This bounds the added
            // latency to `batch_us` while cutting wake-ups under load. Only under load
            // (>= BATCH_MIN_PPS): a lone packet is never held back.
            let (want, args) = if self.batch_us > 0 && batching {
                (BATCH_WANT, args.min_wait_usec(self.batch_us))
            } else {
                (1, args)
            };
            match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(e) => {
                    tracing::error!("relay io_uring worker: enter failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            self.cqes.clear();
            for c in self.ring.completion() {
                self.cqes.push((c.user_data(), c.result(), c.flags()));
            }
            win_pkts += self.cqes.len() as u64;
            let win = now.saturating_duration_since(win_start);
            if win >= Duration::from_millis(100) {
                batching = win_pkts * 1_000_000 / (win.as_micros().max(1) as u64) >= BATCH_MIN_PPS;
                win_start = now;
                win_pkts = 0;
            }
            // Commands sent before these datagrams arrived apply to them (a set_remote followed
            // by media): take them now, before the completions.
            if !self.commands(&mut core, &rx, now) {
                core.publish();
                return;
            }
            for k in 0..self.cqes.len() {
                let (ud, res, flags) = self.cqes[k];
                match ud & TAG_MASK {
                    TAG_RECV => self.on_recv(&mut core, (ud & !TAG_MASK) as u32, res, flags, now),
                    TAG_SEND => {
                        if res < 0 {
                            core.count_send_error();
                        }
                        self.recycle((ud & 0xffff) as u16);
                    }
                    TAG_WAKE => {
                        core.count_wakeup();
                        if self.arm_wake().is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
            // frames a transcoder made beyond one per packet: the queued sends go first
            if core.has_extra() {
                if self.ring.submit().is_err() {
                    core.count_send_error();
                }
                core.drain_extra(sys::send_to);
            }
            self.br.publish();
            while let Some(s) = self.rearm.pop() {
                self.arm_recv(&core, s);
            }
            while let Some(s) = self.deferred_free.pop() {
                self.release_slot(s);
                core.free_socket(s);
            }
        }
    }

    fn on_recv(&mut self, core: &mut Core, slot: u32, res: i32, flags: u32, now: Instant) {
        let i = slot as usize;
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res >= 0 && bid < NBUF {
                self.on_datagram(core, slot, bid, res as usize, now);
            } else {
                self.recycle(bid);
            }
        }
        if !cqueue::more(flags) {
            // The multishot request ended (cancelled, out of buffers, or an error).
            let closing = self.slots.get(i).is_some_and(|s| s.closing);
            if let Some(s) = self.slots.get_mut(i) {
                s.armed = false;
            }
            if closing {
                self.release_slot(slot);
                core.free_socket(slot);
            } else {
                self.rearm.push(slot);
            }
        }
    }

    fn on_datagram(&mut self, core: &mut Core, slot: u32, bid: u16, len: usize, now: Instant) {
        let base = bid as usize * BUF;
        let buf = &self.bufs[base..base + len.min(BUF)];
        let Ok(out) = RecvMsgOut::parse(buf, &self.recv_msg) else {
            self.recycle(bid);
            return;
        };
        if out.is_payload_truncated() {
            core.count_truncated();
            self.recycle(bid);
            return;
        }
        let Some(src) = sys::from_sockaddr_bytes(out.name_data()) else {
            self.recycle(bid);
            return;
        };
        let payload = out.payload_data();
        let off = payload.as_ptr() as usize - self.bufs.as_ptr() as usize;
        let plen = payload.len();
        // the rest of this buffer is room for an SRTP tag
        let room_end = (base + BUF).min(self.bufs.len());
        let Some(fwd) = core.on_packet(slot, src, &mut self.bufs[off..room_end], plen, now) else {
            self.recycle(bid);
            return;
        };
        let b = bid as usize;
        let nl = sys::to_sockaddr(&fwd.dst, &mut self.send_names[b]);
        self.send_msgs[b].msg_namelen = nl;
        self.send_iovs[b] = libc::iovec {
            iov_base: self.bufs[off..].as_mut_ptr().cast(),
            iov_len: fwd.len,
        };
        let fixed = self.slots.get(fwd.slot as usize).is_some_and(|s| s.fixed);
        let e = if fixed {
            opcode::SendMsg::new(Fixed(fwd.slot), &self.send_msgs[b]).build()
        } else {
            opcode::SendMsg::new(Fd(fwd.fd), &self.send_msgs[b]).build()
        }
        .user_data(TAG_SEND | bid as u64);
        if self.push(e).is_err() {
            core.count_send_error();
            self.recycle(bid);
        }
    }
}
