//! The gateway's one-pass JSON check against serde_json on any bytes: the same verdict (at
//! serde_json's own nesting limit of 127 levels), and an error's position within the input.
#![no_main]

use genesys_lambda_gateway::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let ours = json::check(bytes, 127);
    let serde = serde_json::from_slice::<serde_json::Value>(bytes);
    assert_eq!(
        ours.is_ok(),
        serde.is_ok(),
        "ours {ours:?}, serde_json {serde:?}"
    );
    if let Err(e) = ours {
        assert!(e.line >= 1 && e.column >= 1);
        assert!(e.line <= bytes.iter().filter(|&&b| b == b'\n').count() + 1);
    }
});
