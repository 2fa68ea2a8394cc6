//! Arbitrary bytes as a client certificate (DER): reading it never
//! panics, and a certificate it reads always gives valid header values in
//! every format, so that a verified certificate is never turned into a
//! failure by what its names contain.
#![no_main]

use casfront::client_cert::headers::Values;
use casfront::client_cert::x509::read;
use casfront::config::CertFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = read(data) {
        for format in [CertFormat::Pem, CertFormat::PemUrlencoded, CertFormat::Base64] {
            if let Err(e) = Values::new(data, &facts, format, true) {
                panic!("{e}: {facts:?}");
            }
        }
    }
});
