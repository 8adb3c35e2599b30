//! Whole requests through the public router (method, path, headers, body), in-process: every
//! answer has a documented status and a JSON error body, and Lambda is only ever reached for a
//! function allow-listed for the org whose secret was presented.
//! Lambda's endpoint is a closed loopback port, so reaching it answers 502 `lambda_error`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use aws_credential_types::Credentials;
use base64::Engine;
use genesys_lambda_gateway::config::Config;
use genesys_lambda_gateway::credentials::{AssumeFailure, AssumeRequest, AssumeRole, BoxFuture};
use genesys_lambda_gateway::metrics::Metrics;
use genesys_lambda_gateway::server::{self, Gateway};
use http::{HeaderName, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use sha2::Digest;

const ORGS: [(&str, &str, &str); 2] = [
    ("acme", "acme-secret", "echo"),
    ("acme-corp", "corp-secret", "other.fn"),
];

struct InstantSts;

impl AssumeRole for InstantSts {
    fn assume_role<'a>(
        &'a self,
        _: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
        Box::pin(async {
            Ok(Credentials::new(
                "ASIAFUZZ",
                "fuzz",
                Some("token".into()),
                Some(SystemTime::now() + Duration::from_secs(3600)),
                "fuzz",
            ))
        })
    }
}

struct State {
    rt: tokio::runtime::Runtime,
    router: genesys_lambda_gateway::ingress::PublicService,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    let mut text = String::from("[server]\nmax_body_bytes = 4096\n[aws]\nregion = \"us-east-1\"\n");
    for (i, (id, secret, function)) in ORGS.iter().enumerate() {
        text.push_str(&format!(
            "[[orgs]]\nid = \"{id}\"\nrole_arn = \"arn:aws:iam::11112222333{i}:role/r\"\ntoken_sha256 = \"{}\"\n[orgs.functions]\n\"{function}\" = {{ arn = \"arn:aws:lambda:us-east-1:11112222333{i}:function:f\", timeout = \"1s\" }}\n",
            hex::encode(sha2::Sha256::digest(secret))
        ));
    }
    let config = Config::parse(&text).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = rt.block_on(async {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            // Nothing listens on the discard port: a request that gets this far fails fast.
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let metrics = Arc::new(Metrics::new(&prometheus::Registry::new(), true).unwrap());
        let gateway = Gateway::new(config, sdk, Arc::new(InstantSts), metrics).unwrap();
        server::public_service(gateway)
    });
    State { rt, router }
});

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    /// A function name to put in the invoke path, or (when `raw_path`) a whole path.
    path: String,
    raw_path: bool,
    /// 0/1: that org's real secret (Basic); 2/3: Bearer; 4: org 0's user with org 1's secret.
    auth: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    peer: u32,
}

fn basic(user: &str, secret: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {creds}")
}

/// The path segment as the gateway hands it to the handler: percent-decoded.
fn decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (
                (bytes[i + 1] as char).to_digit(16),
                (bytes[i + 2] as char).to_digit(16),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fuzz_target!(|input: Input| {
    let state = &*STATE;
    let method = [Method::POST, Method::GET, Method::PUT, Method::OPTIONS]
        [usize::from(input.method % 4)]
    .clone();
    let path = if input.raw_path {
        input.path.clone()
    } else {
        format!("/v1/functions/{}/invoke", input.path)
    };
    let authorization = match input.auth % 6 {
        0 => Some(basic(ORGS[0].0, ORGS[0].1)),
        1 => Some(basic(ORGS[1].0, ORGS[1].1)),
        2 => Some(format!("Bearer {}", ORGS[0].1)),
        3 => Some(format!("Bearer {}", ORGS[1].1)),
        4 => Some(basic(ORGS[0].0, ORGS[1].1)),
        _ => None,
    };
    let mut builder = Request::builder().method(method.clone()).uri(&path);
    if let Some(auth) = &authorization {
        builder = builder.header("authorization", auth);
    }
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(axum::body::Body::from(input.body.clone())) else {
        return;
    };
    let peer = SocketAddr::from((input.peer.to_be_bytes(), 40000));
    let (status, body) = state.rt.block_on(async {
        let response = state.router.clone().serve(peer, request).await;
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body)
    });
    assert!(
        matches!(
            status,
            400 | 401 | 403 | 404 | 405 | 413 | 415 | 429 | 502 | 503 | 504
        ),
        "status {status}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error body");
    let code = json["error"]["code"].as_str().expect("an error code");
    if code == "lambda_error" {
        // Lambda was reached: an org's own secret, and that org's allow-listed function.
        let org = match input.auth % 6 {
            0 | 2 => 0,
            1 | 3 => 1,
            other => panic!("Lambda reached with auth case {other}"),
        };
        assert_eq!(method, Method::POST);
        let uri: http::Uri = path.parse().unwrap();
        let name = uri
            .path()
            .strip_prefix("/v1/functions/")
            .and_then(|rest| rest.strip_suffix("/invoke"))
            .and_then(decoded);
        assert_eq!(name.as_deref(), Some(ORGS[org].2), "{path:?}");
    }
});
