//! Fuzz RTCP compound parsing and RTP header parsing/receiver statistics.
//!
//! The body and its invariants are `media_relay::fuzzing::rtcp`, which the stable mutation loop
//! (`media-core/tests/fuzz_loop.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media_relay::fuzzing::rtcp(data);
});
