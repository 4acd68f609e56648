//! The project's own codecs against an independent implementation: spandsp's G.722 (the
//! library baresip's g722 module uses; it passes the ITU-T G.722 Appendix II test sequences),
//! loaded with dlopen so the build needs no C headers. `scripts/install-deps.sh` installs
//! libspandsp2; without it this test fails (it never skips).
//!
//! Bit exactness both ways: our encoder's octets equal spandsp's for the same input, and our
//! decoder's samples equal spandsp's for the same octets (its own and random ones), except
//! where spandsp lets an out-of-range output wrap and ours saturates.

use std::ffi::{c_int, c_void, CStr};

const LIB: &CStr = c"libspandsp.so.2";

type EncInit = unsafe extern "C" fn(*mut c_void, c_int, c_int) -> *mut c_void;
type Enc = unsafe extern "C" fn(*mut c_void, *mut u8, *const i16, c_int) -> c_int;
type DecInit = unsafe extern "C" fn(*mut c_void, c_int, c_int) -> *mut c_void;
type Dec = unsafe extern "C" fn(*mut c_void, *mut i16, *const u8, c_int) -> c_int;
type Free = unsafe extern "C" fn(*mut c_void) -> c_int;

struct Spandsp {
    handle: *mut c_void,
}

impl Spandsp {
    fn open() -> Spandsp {
        // SAFETY: dlopen with a NUL-terminated name; the handle is checked below.
        let handle = unsafe { libc::dlopen(LIB.as_ptr(), libc::RTLD_NOW) };
        assert!(
            !handle.is_null(),
            "libspandsp.so.2 not found: run scripts/install-deps.sh (package libspandsp2)"
        );
        Spandsp { handle }
    }

    fn sym<T: Copy>(&self, name: &CStr) -> T {
        // SAFETY: the handle is open; the symbol is checked for NULL and then reinterpreted
        // as the function type of spandsp 0.0.6's g722.h prototype it names.
        unsafe {
            let p = libc::dlsym(self.handle, name.as_ptr());
            assert!(!p.is_null(), "{name:?} missing from libspandsp");
            std::mem::transmute_copy(&p)
        }
    }

    /// spandsp's encoding of `pcm` at 64 kbit/s, 16 kHz, default options.
    fn encode(&self, pcm: &[i16]) -> Vec<u8> {
        let init: EncInit = self.sym(c"g722_encode_init");
        let enc: Enc = self.sym(c"g722_encode");
        let free: Free = self.sym(c"g722_encode_free");
        let mut out = vec![0u8; pcm.len() / 2];
        // SAFETY: a state spandsp allocates, buffers of the sizes the call is told.
        unsafe {
            let s = init(std::ptr::null_mut(), 64000, 0);
            assert!(!s.is_null());
            let n = enc(s, out.as_mut_ptr(), pcm.as_ptr(), pcm.len() as c_int);
            free(s);
            out.truncate(n as usize);
        }
        out
    }

    fn decode(&self, data: &[u8]) -> Vec<i16> {
        let init: DecInit = self.sym(c"g722_decode_init");
        let dec: Dec = self.sym(c"g722_decode");
        let free: Free = self.sym(c"g722_decode_free");
        let mut out = vec![0i16; data.len() * 2];
        // SAFETY: as in `encode`.
        unsafe {
            let s = init(std::ptr::null_mut(), 64000, 0);
            assert!(!s.is_null());
            let n = dec(s, out.as_mut_ptr(), data.as_ptr(), data.len() as c_int);
            free(s);
            out.truncate(n as usize);
        }
        out
    }
}

impl Drop for Spandsp {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { libc::dlclose(self.handle) };
    }
}

/// Test signals: tones across the band, a sweep, noise, full-scale edges, silence.
fn signals() -> Vec<(&'static str, Vec<i16>)> {
    let n = 16000;
    let tone = |f: f64, a: f64| -> Vec<i16> {
        (0..n)
            .map(|i| (a * (2.0 * std::f64::consts::PI * f * i as f64 / 16000.0).sin()) as i16)
            .collect()
    };
    let sweep: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 16000.0;
            (12000.0 * (2.0 * std::f64::consts::PI * (50.0 + 3900.0 * t) * t).sin()) as i16
        })
        .collect();
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<i16> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as i16
        })
        .collect();
    let square: Vec<i16> = (0..n)
        .map(|i| if (i / 5) % 2 == 0 { i16::MAX } else { i16::MIN })
        .collect();
    vec![
        ("440 Hz", tone(440.0, 9000.0)),
        ("1 kHz loud", tone(1000.0, 30000.0)),
        ("6 kHz", tone(6000.0, 5000.0)),
        ("quiet 200 Hz", tone(200.0, 40.0)),
        ("sweep", sweep),
        ("noise", noise),
        ("square", square),
        ("silence", vec![0; n]),
    ]
}

#[test]
fn g722_encoder_matches_spandsp_bit_for_bit() {
    let sp = Spandsp::open();
    for (name, pcm) in signals() {
        let want = sp.encode(&pcm);
        let mut enc = codecs::g722::Encoder::new();
        let mut got = vec![0u8; pcm.len() / 2];
        let n = enc.encode(&pcm, &mut got);
        assert_eq!(n, want.len(), "{name}");
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first, None, "{name}: first differing octet");
    }
}

#[test]
fn g722_decoder_matches_spandsp_bit_for_bit() {
    let sp = Spandsp::open();
    let mut streams: Vec<(String, Vec<u8>)> = signals()
        .into_iter()
        .map(|(name, pcm)| (name.to_string(), sp.encode(&pcm)))
        .collect();
    // every octet value, and a random stream (no encoder would produce it)
    streams.push((
        "every code".into(),
        (0..=255u8).cycle().take(8192).collect(),
    ));
    let mut x: u32 = 0xdead_beef;
    let random = (0..8000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    streams.push(("random".into(), random));
    for (name, data) in streams {
        let want = sp.decode(&data);
        let mut dec = codecs::g722::Decoder::new();
        let mut got = vec![0i16; data.len() * 2];
        assert_eq!(dec.decode(&data, &mut got), want.len(), "{name}");
        // Where the receive QMF's sum leaves 16 bits, spandsp's output wraps around (a click
        // of opposite sign) and ours saturates at the rail, as the Recommendation's
        // arithmetic does: the only difference allowed.
        let wrapped = |a: i16, _: i16| a == i16::MAX || a == i16::MIN;
        let first = got
            .iter()
            .zip(&want)
            .position(|(&a, &b)| a != b && !wrapped(a, b));
        if let Some(i) = first {
            let lo = i.saturating_sub(3);
            panic!(
                "{name}: first differing sample {i}: ours {:?} spandsp {:?}",
                &got[lo..i + 3],
                &want[lo..i + 3]
            );
        }
    }
}
