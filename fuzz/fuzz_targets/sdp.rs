//! Fuzz SDP parse and rewrite and the offer/answer media control over a fake data plane.
//!
//! The body and its invariants are `media_relay::fuzzing::sdp`, which the stable mutation loop
//! (`media-core/tests/fuzz_loop.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media_relay::fuzzing::sdp(data);
});
