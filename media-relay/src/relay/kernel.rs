//! Kernel fast path: an eBPF program on the ingress of the media interfaces (tcx, Linux 6.6+)
//! that forwards *settled* RTP flows inside the kernel, the way rtpengine's kernel module does,
//! without a socket wake-up, a receive and a send per packet.
//!
//! User space stays in charge: the worker core forwards the first packets of every flow itself
//! (latching, RTP-bleed guard, strict source), and only once both legs of a pair are settled
//! (the source of each side can no longer move) installs one table entry per direction:
//! `(relay address, relay port, latched source address, source port)` ->
//! `(relay address, peer-leg port, peer address, peer port)`. A packet matching an entry has its
//! IPv4/UDP addresses and ports rewritten (checksums updated incrementally), is counted, and its
//! RTP sequence number and timestamp feed the same passive loss / jitter estimate (RFC 3550
//! A.1/A.8) the user-space path keeps; then it goes up the stack to a local destination, or is
//! redirected out of the interface towards a remote one (route looked up over rtnetlink when
//! the flow is installed, next hop's MAC from the neighbour table per packet, via
//! `bpf_redirect_neigh`). A local destination is served from the loopback interface only: a
//! packet from outside for a peer on the relay's own host stays in user space (its rewritten
//! source, a local address, would be a martian on an outside interface). A new SSRC on a flow
//! goes up too: user space sees the new source, takes the pair back and returns it to the
//! kernel once the new source is validated. Anything else — RTCP
//! (including RTCP multiplexed on the RTP port), IPv6, IP options or fragments, packets from any
//! other source (bleed attempts), unknown ports — goes on to the sockets unchanged, so user space
//! sees it and applies its policy. A new offer (set_remote) or a closed pair removes the entries
//! first. The workers read the entries' counters back periodically (packets, bytes, last
//! packet, sequence, jitter), so stats, MOS, metrics and the media timeout are the same whichever
//! path carried the packet.
//!
//! The program is assembled here (no compiler, no object file, no loader library): about 130
//! instructions, loaded with `bpf(2)` and attached with a tcx link, which the kernel detaches
//! when the process exits, however it exits. The generated program is declared to the kernel as
//! "Dual MIT/GPL" (a GPL-compatible license lets it use every networking helper).
//!
//! Needs CAP_BPF + CAP_NET_ADMIN (root) and Linux 6.6+ (tcx); `media.kernel_forwarding: auto`
//! falls back to user space forwarding when either is missing and says so in the log.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// ---------------------------------------------------------------------------------------------
// Table layout (shared with the program below; all fields in the order the program reads them)

/// Key: where a packet arrived (relay side) and where it came from, as on the wire
/// (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    daddr: [u8; 4],
    saddr: [u8; 4],
    dport: [u8; 2],
    sport: [u8; 2],
}

impl FlowKey {
    /// Packets sent by `from` to the relay's `at`.
    pub fn new(at: SocketAddrV4, from: SocketAddrV4) -> FlowKey {
        FlowKey {
            daddr: at.ip().octets(),
            saddr: from.ip().octets(),
            dport: at.port().to_be_bytes(),
            sport: from.port().to_be_bytes(),
        }
    }
}

/// Value: the rewrite, then counters and RTP state the program updates.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowEntry {
    new_saddr: [u8; 4], // 0
    new_daddr: [u8; 4], // 4
    new_sport: [u8; 2], // 8
    new_dport: [u8; 2], // 10
    /// RTP clock rate (Hz) for the jitter estimate; 0 = no jitter.
    pub rate: u32, // 12
    pub packets: u64,   // 16
    /// UDP payload bytes.
    pub bytes: u64, // 24
    /// `CLOCK_MONOTONIC` of the last packet, ns.
    pub last_ns: u64, // 32
    /// Extended highest sequence number received (RFC 3550 A.1: cycles << 16 | max_seq).
    pub ext_max: u32, // 40
    /// RFC 3550 A.8 jitter, in timestamp units x 16.
    pub jitter16: u32, // 44
    /// Relative transit time of the last packet, timestamp units.
    pub transit: u32, // 48
    /// Bit 0: `transit` is valid.
    pub flags: u32, // 52
    /// Interface towards a remote destination (0: the destination is local).
    pub oif: u32, // 56
    /// Next hop towards it (the gateway, or the destination itself on-link).
    nexthop: [u8; 4], // 60
    /// The RTP SSRC this flow carries (network order): packets with another one go to user
    /// space, which sees the new source and moves the flow over (`Core`).
    pub ssrc: [u8; 4], // 64
    _pad: u32,          // 68
}

const KEY_SIZE: u32 = std::mem::size_of::<FlowKey>() as u32;
const VALUE_SIZE: u32 = std::mem::size_of::<FlowEntry>() as u32;
const _: () = assert!(KEY_SIZE == 12 && VALUE_SIZE == 72);

impl FlowEntry {
    /// Rewrite to: out of the relay's `via`, to `to`.
    pub fn new(via: SocketAddrV4, to: SocketAddrV4) -> FlowEntry {
        FlowEntry {
            new_saddr: via.ip().octets(),
            new_daddr: to.ip().octets(),
            new_sport: via.port().to_be_bytes(),
            new_dport: to.port().to_be_bytes(),
            ..FlowEntry::default()
        }
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) plain-old-data without padding (asserted size 72 = sum of fields).
        unsafe {
            std::slice::from_raw_parts((self as *const FlowEntry).cast(), VALUE_SIZE as usize)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny eBPF assembler

mod asm {
    // instruction classes
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    // sizes
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    // modes
    pub const MEM: u8 = 0x60;
    pub const ATOMIC: u8 = 0xc0;
    // ALU ops
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOV: u8 = 0xb0;
    pub const ARSH: u8 = 0xc0;
    pub const END: u8 = 0xd0;
    pub const X: u8 = 0x08;
    // jumps
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JNE: u8 = 0x50;
    pub const JSGE: u8 = 0x70;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;

    pub struct Asm {
        pub code: Vec<u64>,
        labels: std::collections::HashMap<&'static str, usize>,
        fixups: Vec<(usize, &'static str)>,
    }

    fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        let b0 = code as u64;
        let b1 = ((src as u64 & 0xf) << 4) | (dst as u64 & 0xf);
        let o = off as u16 as u64;
        let i = imm as u32 as u64;
        b0 | (b1 << 8) | (o << 16) | (i << 32)
    }

    impl Asm {
        pub fn new() -> Asm {
            Asm {
                code: Vec::new(),
                labels: Default::default(),
                fixups: Vec::new(),
            }
        }
        fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
            self.code.push(raw(code, dst, src, off, imm));
        }
        pub fn label(&mut self, l: &'static str) {
            self.labels.insert(l, self.code.len());
        }
        pub fn mov_imm(&mut self, d: u8, imm: i32) {
            self.push(ALU64 | MOV, d, 0, 0, imm);
        }
        pub fn mov(&mut self, d: u8, s: u8) {
            self.push(ALU64 | MOV | X, d, s, 0, 0);
        }
        /// 32-bit move: zero-extends (truncates `d` to its low 32 bits when `d == s`).
        pub fn mov32(&mut self, d: u8, s: u8) {
            self.push(ALU | MOV | X, d, s, 0, 0);
        }
        pub fn alu_imm(&mut self, op: u8, d: u8, imm: i32) {
            self.push(ALU64 | op, d, 0, 0, imm);
        }
        pub fn alu(&mut self, op: u8, d: u8, s: u8) {
            self.push(ALU64 | op | X, d, s, 0, 0);
        }
        pub fn neg(&mut self, d: u8) {
            self.push(ALU64 | NEG, d, 0, 0, 0);
        }
        /// Network (big endian) to host order of the low `bits` of `d` (x86/arm64: a swap).
        pub fn swap_be(&mut self, d: u8, bits: i32) {
            let to_be = if cfg!(target_endian = "little") {
                0x08
            } else {
                0
            };
            self.push(ALU | END | to_be, d, 0, 0, bits);
        }
        pub fn ldx(&mut self, size: u8, d: u8, s: u8, off: i16) {
            self.push(LDX | MEM | size, d, s, off, 0);
        }
        pub fn stx(&mut self, size: u8, d: u8, off: i16, s: u8) {
            self.push(STX | MEM | size, d, s, off, 0);
        }
        pub fn st_imm(&mut self, size: u8, d: u8, off: i16, imm: i32) {
            self.push(ST | MEM | size, d, 0, off, imm);
        }
        /// `*(u64 *)(d + off) += s`, atomically.
        pub fn atomic_add64(&mut self, d: u8, off: i16, s: u8) {
            self.push(STX | ATOMIC | DW, d, s, off, ADD as i32);
        }
        pub fn jmp_reg(&mut self, op: u8, d: u8, s: u8, to: &'static str) {
            self.fixups.push((self.code.len(), to));
            self.push(JMP | op | X, d, s, 0, 0);
        }
        pub fn jmp_imm(&mut self, op: u8, d: u8, imm: i32, to: &'static str) {
            self.fixups.push((self.code.len(), to));
            self.push(JMP | op, d, 0, 0, imm);
        }
        pub fn call(&mut self, helper: i32) {
            self.push(JMP | CALL, 0, 0, 0, helper);
        }
        pub fn exit(&mut self) {
            self.push(JMP | EXIT, 0, 0, 0, 0);
        }
        /// `d = map` (the map's fd, which the kernel turns into the map's address).
        pub fn ld_map(&mut self, d: u8, fd: i32) {
            const PSEUDO_MAP_FD: u8 = 1;
            self.push(0x18, d, PSEUDO_MAP_FD, 0, fd);
            self.push(0, 0, 0, 0, 0);
        }
        pub fn finish(mut self) -> Vec<u64> {
            for (at, l) in std::mem::take(&mut self.fixups) {
                let target = self.labels[l] as i64;
                let off = (target - at as i64 - 1) as i16;
                let ins = self.code[at];
                self.code[at] = (ins & !(0xffff << 16)) | ((off as u16 as u64) << 16);
            }
            self.code
        }
    }
}

// helper ids (include/uapi/linux/bpf.h)
const MAP_LOOKUP_ELEM: i32 = 1;
const KTIME_GET_NS: i32 = 5;
const SKB_STORE_BYTES: i32 = 9;
const L3_CSUM_REPLACE: i32 = 10;
const L4_CSUM_REPLACE: i32 = 11;
const SKB_LOAD_BYTES: i32 = 26;
const REDIRECT_NEIGH: i32 = 152;

const F_PSEUDO_HDR: i32 = 0x10;
const F_MARK_MANGLED_0: i32 = 0x20;
/// The loopback interface's index in every network namespace.
const LOOPBACK_IFINDEX: i32 = 1;

/// tcx verdicts
const TCX_NEXT: i32 = -1;
const TCX_PASS: i32 = 0;
const TCX_DROP: i32 = 2;

/// The forwarding program (tc ingress, frames start at the Ethernet header).
fn program(map_fd: i32) -> Vec<u64> {
    use asm::*;
    let mut a = Asm::new();
    const FP: u8 = 10;
    // Stack: packet copy at PKT (54 bytes: Ethernet 14 + IPv4 20 + UDP 8 + RTP 12), placed so
    // that the IPv4 addresses are 4-byte aligned (the verifier wants aligned stack accesses);
    // table key at KEY, later reused for the next hop of a redirect (20 bytes).
    const PKT: i16 = -66;
    const KEY: i16 = -88;
    const COPY: i32 = 54;

    a.mov(6, 1); // r6 = skb
    a.mov(1, 6);
    a.mov_imm(2, 0);
    a.mov(3, FP);
    a.alu_imm(ADD, 3, PKT as i32);
    a.mov_imm(4, COPY);
    a.call(SKB_LOAD_BYTES);
    a.jmp_imm(JNE, 0, 0, "next");
    // IPv4 (ethertype 0x0800 as read little endian), no options, UDP, not a fragment
    a.ldx(H, 1, FP, PKT + 12);
    a.jmp_imm(JNE, 1, 0x0008, "next");
    a.ldx(B, 1, FP, PKT + 14);
    a.jmp_imm(JNE, 1, 0x45, "next");
    a.ldx(B, 1, FP, PKT + 23);
    a.jmp_imm(JNE, 1, 17, "next");
    a.ldx(H, 1, FP, PKT + 20);
    a.alu_imm(AND, 1, 0xff3f);
    a.jmp_imm(JNE, 1, 0, "next");
    // RTP version 2, and not RTCP multiplexed on the port (RFC 5761: PT 64-95 is RTCP's range)
    a.ldx(B, 1, FP, PKT + 42);
    a.alu_imm(AND, 1, 0xc0);
    a.jmp_imm(JNE, 1, 0x80, "next");
    a.ldx(B, 1, FP, PKT + 43);
    a.alu_imm(AND, 1, 0x7f);
    a.jmp_imm(JGT, 1, 95, "rtp");
    a.jmp_imm(JGE, 1, 64, "next");
    a.label("rtp");
    // key = {daddr, saddr, dport, sport}
    a.ldx(W, 1, FP, PKT + 30);
    a.stx(W, FP, KEY, 1);
    a.ldx(W, 1, FP, PKT + 26);
    a.stx(W, FP, KEY + 4, 1);
    a.ldx(H, 1, FP, PKT + 36);
    a.stx(H, FP, KEY + 8, 1);
    a.ldx(H, 1, FP, PKT + 34);
    a.stx(H, FP, KEY + 10, 1);
    a.ld_map(1, map_fd);
    a.mov(2, FP);
    a.alu_imm(ADD, 2, KEY as i32);
    a.call(MAP_LOOKUP_ELEM);
    a.jmp_imm(JEQ, 0, 0, "next");
    a.mov(7, 0); // r7 = entry
                 // Another RTP source (SSRC) on the flow: user space first (new source, new stats).
    a.ldx(W, 1, FP, PKT + 50);
    a.ldx(W, 2, 7, 64);
    a.jmp_reg(JNE, 1, 2, "next");
    // A local destination is reached only from the loopback interface: on any other, a packet
    // whose source becomes a local address would be dropped as a martian. User space forwards
    // those (a peer on the relay's host, the other peer outside).
    a.ldx(W, 1, 7, 56);
    a.jmp_imm(JNE, 1, 0, "count");
    a.ldx(W, 1, 6, 36); // skb->ingress_ifindex
    a.jmp_imm(JNE, 1, LOOPBACK_IFINDEX, "next");
    a.label("count");

    // counters
    a.mov_imm(1, 1);
    a.atomic_add64(7, 16, 1);
    a.ldx(W, 1, 6, 0); // skb->len (from the Ethernet header)
    a.alu_imm(SUB, 1, 42);
    a.atomic_add64(7, 24, 1);
    a.call(KTIME_GET_NS);
    a.stx(DW, 7, 32, 0);
    a.mov(8, 0); // r8 = now (ns)

    // RFC 3550 A.1, reduced: the extended highest sequence number moves forward only
    a.ldx(H, 1, FP, PKT + 44);
    a.swap_be(1, 16);
    a.ldx(W, 2, 7, 40);
    a.mov(3, 1);
    a.alu(SUB, 3, 2);
    a.alu_imm(AND, 3, 0xffff);
    a.jmp_imm(JGE, 3, 0x8000, "jitter");
    a.alu(ADD, 2, 3);
    a.stx(W, 7, 40, 2);
    a.label("jitter");
    // RFC 3550 A.8: transit = arrival (timestamp units) - RTP timestamp;
    // J16 += |D| - (J16 + 8) / 16
    a.ldx(W, 4, 7, 12);
    a.jmp_imm(JEQ, 4, 0, "rewrite");
    a.mov(5, 8);
    a.alu_imm(DIV, 5, 1000);
    a.alu(MUL, 5, 4);
    a.alu_imm(DIV, 5, 1_000_000);
    a.ldx(W, 1, FP, PKT + 46);
    a.swap_be(1, 32);
    a.alu(SUB, 5, 1);
    a.mov32(5, 5);
    a.ldx(W, 2, 7, 52);
    a.ldx(W, 3, 7, 48);
    a.stx(W, 7, 48, 5);
    a.st_imm(W, 7, 52, 1);
    a.jmp_imm(JEQ, 2, 0, "rewrite");
    a.alu(SUB, 5, 3);
    a.alu_imm(LSH, 5, 32);
    a.alu_imm(ARSH, 5, 32);
    a.jmp_imm(JSGE, 5, 0, "positive");
    a.neg(5);
    a.label("positive");
    a.ldx(W, 2, 7, 44);
    a.mov(3, 2);
    a.alu_imm(ADD, 3, 8);
    a.alu_imm(RSH, 3, 4);
    a.alu(ADD, 2, 5);
    a.alu(SUB, 2, 3);
    a.stx(W, 7, 44, 2);

    a.label("rewrite");
    a.ldx(W, 8, FP, PKT + 26); // old source address
    a.ldx(W, 9, FP, PKT + 30); // old destination address
                               // UDP checksum (offset 40): addresses are in the pseudo header; ports in the header
    for (old, new_off) in [(8u8, 0i16), (9, 4)] {
        a.mov(1, 6);
        a.mov_imm(2, 40);
        a.mov(3, old);
        a.ldx(W, 4, 7, new_off);
        a.mov_imm(5, F_PSEUDO_HDR | F_MARK_MANGLED_0 | 4);
        a.call(L4_CSUM_REPLACE);
    }
    a.mov(1, 6);
    a.mov_imm(2, 40);
    a.ldx(W, 3, FP, PKT + 34);
    a.ldx(W, 4, 7, 8);
    a.mov_imm(5, F_MARK_MANGLED_0 | 4);
    a.call(L4_CSUM_REPLACE);
    // IPv4 header checksum (offset 24)
    for (old, new_off) in [(8u8, 0i16), (9, 4)] {
        a.mov(1, 6);
        a.mov_imm(2, 24);
        a.mov(3, old);
        a.ldx(W, 4, 7, new_off);
        a.mov_imm(5, 4);
        a.call(L3_CSUM_REPLACE);
    }
    // the new addresses (offset 26, 8 bytes) and ports (offset 34, 4 bytes)
    a.mov(1, 6);
    a.mov_imm(2, 26);
    a.mov(3, 7);
    a.mov_imm(4, 8);
    a.mov_imm(5, 0);
    a.call(SKB_STORE_BYTES);
    a.jmp_imm(JNE, 0, 0, "drop");
    a.mov(1, 6);
    a.mov_imm(2, 34);
    a.mov(3, 7);
    a.alu_imm(ADD, 3, 8);
    a.mov_imm(4, 4);
    a.mov_imm(5, 0);
    a.call(SKB_STORE_BYTES);
    a.jmp_imm(JNE, 0, 0, "drop");

    // Where to (the route user space looked up at install): a remote destination leaves
    // through its interface, the next hop's MAC from the neighbour table; a local one (the
    // packet came in on loopback) goes up the stack.
    a.ldx(W, 1, 7, 56);
    a.jmp_imm(JEQ, 1, 0, "pass");
    // struct bpf_redir_neigh { u32 nh_family; be32 ipv4_nh; u32 pad[3] } (20 bytes) at KEY
    a.st_imm(W, FP, KEY, libc::AF_INET);
    a.ldx(W, 2, 7, 60);
    a.stx(W, FP, KEY + 4, 2);
    a.mov_imm(2, 0);
    a.stx(DW, FP, KEY + 8, 2);
    a.stx(W, FP, KEY + 16, 2);
    a.mov(2, FP);
    a.alu_imm(ADD, 2, KEY as i32);
    a.mov_imm(3, 20);
    a.mov_imm(4, 0);
    a.call(REDIRECT_NEIGH);
    a.exit();

    a.label("pass");
    a.mov_imm(0, TCX_PASS);
    a.exit();
    a.label("drop");
    a.mov_imm(0, TCX_DROP);
    a.exit();
    a.label("next");
    a.mov_imm(0, TCX_NEXT);
    a.exit();
    a.finish()
}

// ---------------------------------------------------------------------------------------------
// bpf(2)

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const MAP_TYPE_HASH: u32 = 1;
const PROG_TYPE_SCHED_CLS: u32 = 3;
const ATTACH_TCX_INGRESS: u32 = 46;

/// `union bpf_attr`, as bytes (the kernel accepts a larger, zero-tailed attribute).
#[repr(C, align(8))]
struct Attr([u8; 160]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 160])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, n: &str) -> &mut Self {
        let b = n.as_bytes();
        let k = b.len().min(15);
        self.0[off..off + k].copy_from_slice(&b[..k]);
        self
    }
}

#[cfg(not(target_os = "linux"))]
fn bpf(_cmd: i32, _attr: &mut Attr) -> io::Result<i64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "eBPF is Linux-only",
    ))
}

#[cfg(target_os = "linux")]
fn bpf(cmd: i32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, initialized buffer of the size passed; pointers inside it
    // point to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_of(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor to us; we own it.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// The loaded program, its table and its attachments. Dropping it detaches the program.
pub struct KernelPath {
    map: OwnedFd,
    /// rtnetlink socket of the relay's network namespace, for route lookups at install.
    rtnl: std::sync::Mutex<OwnedFd>,
    _prog: OwnedFd,
    _links: Vec<OwnedFd>,
    /// Names of the interfaces the program is attached to (for the log).
    pub interfaces: Vec<String>,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("interfaces", &self.interfaces)
            .finish()
    }
}

impl KernelPath {
    /// Load the program with a table of `max_flows` entries and attach it to the ingress of the
    /// interfaces media for `address` can arrive on (see [`media_interfaces`]).
    pub fn attach(address: IpAddr, max_flows: u32) -> io::Result<KernelPath> {
        let IpAddr::V4(v4) = address else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel forwarding is IPv4 only",
            ));
        };
        if v4.is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel forwarding needs a specific media.address, not 0.0.0.0",
            ));
        }
        let ifaces = media_interfaces(v4)?;
        let map = fd_of(bpf(
            BPF_MAP_CREATE,
            Attr::new()
                .u32(0, MAP_TYPE_HASH)
                .u32(4, KEY_SIZE)
                .u32(8, VALUE_SIZE)
                .u32(12, max_flows.max(64))
                .name(28, "trunkline_flows"),
        )?);
        let insns = program(map.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut log = vec![0u8; 1 << 16];
        let load = |log_level: u32, log: &mut [u8]| {
            bpf(
                BPF_PROG_LOAD,
                Attr::new()
                    .u32(0, PROG_TYPE_SCHED_CLS)
                    .u32(4, insns.len() as u32)
                    .u64(8, insns.as_ptr() as u64)
                    .u64(16, license.as_ptr() as u64)
                    .u32(24, log_level)
                    .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
                    .u64(
                        32,
                        if log_level > 0 {
                            log.as_mut_ptr() as u64
                        } else {
                            0
                        },
                    )
                    .name(48, "trunkline_rtp"),
            )
        };
        let prog = match load(0, &mut log) {
            Ok(fd) => fd_of(fd),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(e),
            Err(e) => {
                // Load again with the verifier's log, to say why.
                let _ = load(1, &mut log);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(6).collect();
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "loading the RTP program: {e}; verifier: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                ));
            }
        };
        let mut links = Vec::new();
        let mut names = Vec::new();
        for (ifindex, name) in ifaces {
            let link = bpf(
                BPF_LINK_CREATE,
                Attr::new()
                    .u32(0, prog.as_raw_fd() as u32)
                    .u32(4, ifindex)
                    .u32(8, ATTACH_TCX_INGRESS),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("attaching to {name} (tcx): {e}")))?;
            links.push(fd_of(link));
            names.push(name);
        }
        Ok(KernelPath {
            map,
            rtnl: std::sync::Mutex::new(rtnetlink_socket()?),
            _prog: prog,
            _links: links,
            interfaces: names,
        })
    }

    /// Add or replace a flow. The route to its destination is looked up now: the interface
    /// and next hop stay in the entry (a route change reaches flows installed afterwards).
    pub fn install(&self, key: &FlowKey, entry: &FlowEntry) -> io::Result<()> {
        let mut entry = *entry;
        let dst = Ipv4Addr::from(entry.new_daddr);
        match self.route(dst)? {
            Route::Local => {
                entry.oif = 0;
                entry.nexthop = [0; 4];
            }
            Route::Via { oif, nexthop } => {
                entry.oif = oif;
                entry.nexthop = nexthop.octets();
            }
        }
        let entry = &entry;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            Attr::new()
                .u32(0, self.map.as_raw_fd() as u32)
                .u64(8, key as *const FlowKey as u64)
                .u64(16, entry.as_bytes().as_ptr() as u64),
        )
        .map(drop)
    }

    /// A flow's entry as the program left it.
    pub fn read(&self, key: &FlowKey) -> Option<FlowEntry> {
        let mut out = FlowEntry::default();
        bpf(
            BPF_MAP_LOOKUP_ELEM,
            Attr::new()
                .u32(0, self.map.as_raw_fd() as u32)
                .u64(8, key as *const FlowKey as u64)
                .u64(16, &mut out as *mut FlowEntry as u64),
        )
        .ok()?;
        Some(out)
    }

    /// Remove a flow (its packets go to user space again).
    pub fn remove(&self, key: &FlowKey) {
        let _ = bpf(
            BPF_MAP_DELETE_ELEM,
            Attr::new()
                .u32(0, self.map.as_raw_fd() as u32)
                .u64(8, key as *const FlowKey as u64),
        );
    }
}

impl super::core::FastPath for KernelPath {
    fn install(&self, key: &FlowKey, entry: &FlowEntry) -> bool {
        KernelPath::install(self, key, entry).is_ok()
    }
    fn read(&self, key: &FlowKey) -> Option<FlowEntry> {
        KernelPath::read(self, key)
    }
    fn remove(&self, key: &FlowKey) {
        KernelPath::remove(self, key)
    }
}

/// Where the kernel routes a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Local,
    Via { oif: u32, nexthop: Ipv4Addr },
}

fn rtnetlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: valid option value of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    Ok(fd)
}

impl KernelPath {
    /// `ip route get <dst>` over rtnetlink: local, or out of which interface via which hop.
    fn route(&self, dst: Ipv4Addr) -> io::Result<Route> {
        let fd = self
            .rtnl
            .lock()
            .map_err(|_| io::Error::other("rtnetlink lock"))?;
        // nlmsghdr (16) + rtmsg (12) + rtattr RTA_DST (8)
        let mut req = [0u8; 36];
        req[0..4].copy_from_slice(&36u32.to_ne_bytes());
        req[4..6].copy_from_slice(&(libc::RTM_GETROUTE).to_ne_bytes());
        req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req[16] = libc::AF_INET as u8;
        req[17] = 32; // rtm_dst_len
        req[28..30].copy_from_slice(&8u16.to_ne_bytes());
        req[30..32].copy_from_slice(&(libc::RTA_DST).to_ne_bytes());
        req[32..36].copy_from_slice(&dst.octets());
        // SAFETY: sending from a valid buffer on our socket (to the kernel: no address needed).
        let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: receiving into a valid buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse_route(&buf[..n as usize], dst)
    }
}

/// The answer to an RTM_GETROUTE request (one message).
fn parse_route(b: &[u8], dst: Ipv4Addr) -> io::Result<Route> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "rtnetlink: short answer");
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_ne_bytes([*b.get(o)?, *b.get(o + 1)?])) };
    let len = (u16_at(0).ok_or_else(bad)? as usize).min(b.len());
    let ty = u16_at(4).ok_or_else(bad)?;
    if ty == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes(
            b.get(16..20)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        return Err(io::Error::new(
            io::Error::from_raw_os_error(-code).kind(),
            format!("no route to {dst}: {}", io::Error::from_raw_os_error(-code)),
        ));
    }
    if ty != libc::RTM_NEWROUTE {
        return Err(bad());
    }
    let rtm_type = *b.get(23).ok_or_else(bad)?;
    if rtm_type == libc::RTN_LOCAL {
        return Ok(Route::Local);
    }
    if rtm_type != libc::RTN_UNICAST {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("route to {dst} is of type {rtm_type}"),
        ));
    }
    let (mut oif, mut gw) = (0u32, None);
    let mut o = 28;
    while o + 4 <= len {
        let alen = u16_at(o).ok_or_else(bad)? as usize;
        let aty = u16_at(o + 2).ok_or_else(bad)?;
        if alen < 4 || o + alen > len {
            break;
        }
        let data = &b[o + 4..o + alen];
        if aty == libc::RTA_OIF && data.len() >= 4 {
            oif = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
        } else if aty == libc::RTA_GATEWAY && data.len() >= 4 {
            gw = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        o += (alen + 3) & !3;
    }
    if oif == 0 {
        return Err(bad());
    }
    Ok(Route::Via {
        oif,
        nexthop: gw.unwrap_or(dst),
    })
}

/// Interfaces on whose ingress media for `address` can arrive: the loopback interface (local
/// peers always reach a local address through it) and every interface that is up with an IPv4
/// address (a multi-homed host receives packets for `address` on any of them). Interfaces
/// added later are not covered (their packets go through user space).
fn media_interfaces(address: Ipv4Addr) -> io::Result<Vec<(u32, String)>> {
    let mut out: HashMap<u32, String> = HashMap::new();
    let mut found = address.is_loopback();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr whose family we check before the cast.
        let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        if fam != libc::AF_INET {
            continue;
        }
        // SAFETY: family AF_INET means a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let has = sin.sin_addr.s_addr.to_ne_bytes() == address.octets();
        if has {
            found = true;
        }
        if loopback || up {
            let c = std::ffi::CString::new(name.clone()).unwrap_or_default();
            // SAFETY: valid NUL-terminated string.
            let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if idx != 0 {
                out.insert(idx, name);
            }
        }
    }
    // SAFETY: the list from getifaddrs above.
    unsafe { libc::freeifaddrs(ifap) };
    if !found || out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface has {address}"),
        ));
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort();
    Ok(v)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// `CLOCK_MONOTONIC` in ns: the clock of [`FlowEntry::last_ns`].
    fn monotonic_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// An RTM_NEWROUTE answer: nlmsghdr, rtmsg (type at byte 23), then attributes.
    fn answer(rtm_type: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[4..6].copy_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        b[16] = libc::AF_INET as u8;
        b[23] = rtm_type;
        for (ty, data) in attrs {
            b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            b.extend_from_slice(&ty.to_ne_bytes());
            b.extend_from_slice(data);
            while !b.len().is_multiple_of(4) {
                b.push(0);
            }
        }
        let n = b.len() as u32;
        b[0..4].copy_from_slice(&n.to_ne_bytes());
        b
    }

    #[test]
    fn route_answers_are_read_and_bad_ones_refused() {
        let dst = Ipv4Addr::new(192, 0, 2, 9);
        assert_eq!(
            parse_route(&answer(libc::RTN_LOCAL, &[]), dst).unwrap(),
            Route::Local
        );
        let oif = 7u32.to_ne_bytes();
        let via = answer(
            libc::RTN_UNICAST,
            &[(libc::RTA_OIF, &oif), (libc::RTA_GATEWAY, &[10, 0, 0, 1])],
        );
        assert_eq!(
            parse_route(&via, dst).unwrap(),
            Route::Via {
                oif: 7,
                nexthop: Ipv4Addr::new(10, 0, 0, 1)
            }
        );
        let onlink = answer(libc::RTN_UNICAST, &[(libc::RTA_OIF, &oif)]);
        assert_eq!(
            parse_route(&onlink, dst).unwrap(),
            Route::Via {
                oif: 7,
                nexthop: dst
            }
        );
        // unreachable, no interface, an error answer, truncations: errors, never a panic
        assert!(parse_route(&answer(7, &[]), dst).is_err());
        assert!(parse_route(&answer(libc::RTN_UNICAST, &[]), dst).is_err());
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        assert!(parse_route(&err, dst).is_err());
        for cut in 0..via.len() {
            let _ = parse_route(&via[..cut], dst);
        }
        let mut lying = via.clone();
        lying[28..30].copy_from_slice(&200u16.to_ne_bytes()); // attribute longer than the message
        let _ = parse_route(&lying, dst);
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let p = program(3);
        // every jump target is inside the program
        for (i, ins) in p.iter().enumerate() {
            let code = (*ins & 0xff) as u8;
            if code & 0x07 == asm::JMP && code & 0xf0 != asm::CALL && code & 0xf0 != asm::EXIT {
                let off = ((*ins >> 16) & 0xffff) as u16 as i16 as i64;
                let t = i as i64 + 1 + off;
                assert!(t > 0 && (t as usize) < p.len(), "jump at {i} to {t}");
            }
        }
        assert!(p.len() < 200);
    }

    fn rtp(seq: u16, ts: u32, pt: u8) -> Vec<u8> {
        let mut b = vec![0x80, pt];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        b.extend_from_slice(&[0xd5; 160]);
        b
    }

    /// Loads the real program into this machine's kernel (needs root; CI runs as root): a flow
    /// installed for A -> relay port is rewritten to relay peer port -> B in the kernel, with
    /// counters, sequence and jitter state; RTCP-range payload types and other sources are not.
    #[test]
    fn forwards_an_installed_flow_in_the_kernel() {
        let kp = match KernelPath::attach(IpAddr::V4(Ipv4Addr::LOCALHOST), 64) {
            Ok(k) => k,
            Err(e) if std::env::var_os("TRUNKLINE_NO_BPF").is_some() => {
                eprintln!("kernel path unavailable ({e}); TRUNKLINE_NO_BPF set");
                return;
            }
            Err(e) => {
                panic!("kernel path: {e} (run as root, Linux 6.6+; TRUNKLINE_NO_BPF=1 to skip)")
            }
        };
        assert!(kp.interfaces.iter().any(|n| n == "lo"));
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, relay_a, relay_b, b, other) = (bind(), bind(), bind(), bind(), bind());
        for s in [&a, &relay_a, &relay_b, &b, &other] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        let v4 = |s: &UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(v) => v,
            _ => unreachable!(),
        };
        let key = FlowKey::new(v4(&relay_a), v4(&a));
        let mut e = FlowEntry::new(v4(&relay_b), v4(&b));
        e.rate = 8000;
        e.ssrc = 0x1234_5678u32.to_be_bytes();
        e.ext_max = 99;
        kp.install(&key, &e).unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..5u16 {
            a.send_to(&rtp(100 + i, 160 * i as u32, 0), v4(&relay_a))
                .unwrap();
            let (n, from) = b.recv_from(&mut buf).expect("kernel-forwarded packet");
            assert_eq!(from, std::net::SocketAddr::V4(v4(&relay_b)));
            assert_eq!(&buf[..n], &rtp(100 + i, 160 * i as u32, 0)[..]);
        }
        // RTCP-range payload type, and a foreign source: not touched, they reach the relay socket
        a.send_to(&rtp(7, 0, 200), v4(&relay_a)).unwrap();
        let (_, from) = relay_a
            .recv_from(&mut buf)
            .expect("rtcp goes to user space");
        assert_eq!(from, std::net::SocketAddr::V4(v4(&a)));
        other.send_to(&rtp(1, 0, 0), v4(&relay_a)).unwrap();
        let (_, from) = relay_a
            .recv_from(&mut buf)
            .expect("foreign source to user space");
        assert_eq!(from, std::net::SocketAddr::V4(v4(&other)));
        let got = kp.read(&key).unwrap();
        assert_eq!(got.packets, 5);
        assert_eq!(got.bytes, 5 * 172);
        assert_eq!(got.ext_max, 104);
        assert_eq!(got.flags & 1, 1);
        assert!(got.last_ns > 0 && got.last_ns <= monotonic_ns());
        assert_eq!(got.oif, 0, "a local destination");
        assert_eq!(kp.route(Ipv4Addr::new(127, 0, 0, 1)).unwrap(), Route::Local);
        // removed: the next packet reaches the relay socket
        kp.remove(&key);
        a.send_to(&rtp(200, 0, 0), v4(&relay_a)).unwrap();
        assert!(relay_a.recv_from(&mut buf).is_ok());
        assert!(kp.read(&key).is_none());
    }
}
