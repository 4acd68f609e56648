//! Fuzz bencode decoding and ng command handling (cookie, retransmission cache, commands).
//!
//! The body and its invariants are `media_relay::fuzzing::ng`, which the stable mutation loop
//! (`media-core/tests/fuzz_loop.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media_relay::fuzzing::ng(data);
});
