//! Arbitrary text through the `queryString` decoder: nothing may panic,
//! markers never come out as pairs, and a string without `%` or `+`
//! decodes to slices of itself.
#![no_main]

use bdia_format::query::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(qs) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = decode(qs) {
        assert!(pairs.len() <= qs.split('&').count());
        for (k, _) in &pairs {
            assert!(!k.eq_ignore_ascii_case("aqb") && !k.eq_ignore_ascii_case("aqe") && k != "ce");
        }
        if !qs.contains(['%', '+']) {
            for (k, v) in &pairs {
                assert!(qs.contains(k.as_ref()) && qs.contains(v.as_ref()));
            }
        }
    }
});
