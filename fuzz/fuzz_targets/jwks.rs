//! Fuzzes JWKS parsing (`parse_jwks`), pinned key files (`load_pinned`) and their comparison.
#![no_main]

use std::collections::HashSet;

use authwatch::jwk::{load_pinned, missing_from_pin, parse_jwks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Neither JSON nor PEM holds a NUL, so one splits a live set from a different pin and
    // the comparison sees mismatches; without one, the document is pinned against itself.
    let (live_doc, pin_doc) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let live = parse_jwks(live_doc);
    let pinned = load_pinned(pin_doc);
    if let Ok(keys) = &live {
        // The guarantees a verifier relies on: something to verify with, one key per kid,
        // and no RSA key weaker than the minimum.
        assert!(!keys.is_empty());
        let kids: HashSet<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids.len(), keys.len(), "duplicate kid accepted");
        for k in keys {
            if k.kty == "RSA" {
                assert!(k.bits >= 2048, "{}-bit RSA key accepted", k.bits);
                assert!(k.rsa.is_some());
            }
        }
    }
    if let (Ok(keys), Ok(pins)) = (&live, &pinned) {
        let missing = missing_from_pin(keys, pins);
        assert!(missing <= keys.len());
        if std::ptr::eq(live_doc, pin_doc) {
            assert_eq!(missing, 0, "a key set does not cover itself");
        }
    }
});
