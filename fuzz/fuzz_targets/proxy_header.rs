//! Arbitrary bytes as the start of a connection from a PROXY peer: the
//! parser never panics, and a whole header it accepts lies within the bytes
//! seen and under the size cap.
#![no_main]

use casfront::edge::proxy_header::{parse, Parsed, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done { len, .. }) = parse(data) {
        assert!(
            len <= data.len() && len <= MAX_LEN,
            "len {len} of {}",
            data.len()
        );
        // The same header parses the same with anything after it.
        assert_eq!(parse(&data[..len]), parse(data));
    }
});
