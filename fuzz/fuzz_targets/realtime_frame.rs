//! The Realtime frame decoder (vsn 1.0.0 objects, 2.0.0 arrays, 2.0.0 binary pushes): any bytes
//! a client sends decode to a frame or an error, never a panic; a decoded text frame encodes and
//! decodes back to itself (vsn 1.0.0's objects carry no `join_ref` out: Phoenix's v1 serializer
//! writes `topic`, `event`, `payload` and `ref` only).
#![no_main]

use fsync_protocol::realtime::{decode_binary, decode_text, encode, Vsn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_binary(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    for vsn in [Vsn::V1, Vsn::V2] {
        if let Ok(mut frame) = decode_text(vsn, text) {
            let again = decode_text(vsn, &encode(vsn, &frame)).expect("an encoded frame decodes");
            if vsn == Vsn::V1 {
                frame.join_ref = None;
            }
            assert_eq!(again, frame);
        }
    }
});
