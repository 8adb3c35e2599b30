//! Any Lambda answer (status, headers, body) maps to a payload that is valid JSON or to an
//! error response with a documented status and a JSON body; nothing panics.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use genesys_lambda_gateway::config::InvocationType;
use genesys_lambda_gateway::error::RequestError;
use genesys_lambda_gateway::invoke::classify;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    /// Header names picked from the ones Lambda's answer is read for, plus any.
    headers: Vec<(u8, String, Vec<u8>)>,
    body: Vec<u8>,
    event: bool,
}

static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
});

const NAMES: [&str; 5] = [
    "x-amz-function-error",
    "x-amzn-errortype",
    "retry-after",
    "x-amzn-requestid",
    "x-amz-log-result",
];

fuzz_target!(|input: Input| {
    let Ok(status) = StatusCode::from_u16(input.status) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (pick, name, value) in &input.headers {
        let name = NAMES.get(usize::from(*pick)).copied().unwrap_or(name);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let kind = if input.event {
        InvocationType::Event
    } else {
        InvocationType::RequestResponse
    };
    match classify(status, &headers, Bytes::from(input.body), kind) {
        Ok(invoked) => {
            assert!(status.is_success());
            if invoked.accepted {
                assert!(invoked.payload.is_empty());
            } else {
                serde_json::from_slice::<serde_json::Value>(&invoked.payload).unwrap();
            }
        }
        Err(e) => {
            let response = RequestError::from(e).into_response_with_id("fuzz");
            let code = response.status().as_u16();
            assert!(matches!(code, 429 | 502 | 503 | 504), "{code}");
            let body = RT.block_on(http_body_util::BodyExt::collect(response.into_body()));
            let json: serde_json::Value =
                serde_json::from_slice(&body.unwrap().to_bytes()).unwrap();
            assert!(json["error"]["code"].is_string());
        }
    }
});
