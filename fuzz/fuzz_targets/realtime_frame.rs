//! The Realtime frame decoder (vsn 1.0.0 objects, 2.0.0 arrays, 2.0.0 binary pushes): any bytes
//! a client sends decode to a frame or an error, never a panic; a decoded text frame encodes and
//! decodes back to itself.
#![no_main]

use fsync_protocol::realtime::{decode_binary, decode_text, encode, Vsn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_binary(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    for vsn in [Vsn::V1, Vsn::V2] {
        if let Ok(frame) = decode_text(vsn, text) {
            let again = decode_text(vsn, &encode(vsn, &frame)).expect("an encoded frame decodes");
            assert_eq!(again, frame);
        }
    }
});
