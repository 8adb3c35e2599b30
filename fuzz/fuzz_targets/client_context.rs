//! ClientContext from arbitrary headers: never panics; when built, it is base64 of JSON within
//! Lambda's size limit, holds only strings, and carries the authenticated org, never a header's.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use genesys_lambda_gateway::invoke::{CLIENT_CONTEXT_MAX, client_context};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    org: String,
    headers: Vec<(String, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        // Mostly ININ-* names, as Genesys sends, so the interesting paths are reached.
        let name = format!("inin-{name}");
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let Some(encoded) = client_context(&headers, &input.org) else {
        return;
    };
    assert!(encoded.len() <= CLIENT_CONTEXT_MAX, "{}", encoded.len());
    let json = base64::engine::general_purpose::STANDARD
        .decode(&encoded)
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let custom = value["custom"].as_object().unwrap();
    assert!(custom.values().all(|v| v.is_string()));
    assert_eq!(custom["ININ-Organization-Id"], input.org.as_str());
});
