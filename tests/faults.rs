//! Faults no emulator produces on demand: a Lambda endpoint that throttles, answers non-JSON or
//! records what it was sent, and an STS that is down. The gateway talks to the fake Lambda over
//! real loopback HTTP with SigV4; STS is an in-process fake behind the `AssumeRole` trait.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use genesys_lambda_gateway::credentials::{AssumeFailure, AssumeRequest, AssumeRole, BoxFuture};
use http::StatusCode;
use serde_json::{Value, json};
use support::{RunningGateway, basic, sha256_hex};

const ORG: &str = "91cf9239-f549-465b-8cad-9b46f1420818";
const SECRET: &str = "fault-secret";

/// STS that counts calls and is either up or down.
struct FakeSts {
    calls: AtomicUsize,
    down: bool,
}

impl AssumeRole for FakeSts {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down {
                return Err(AssumeFailure::Unavailable("connection refused".into()));
            }
            assert_eq!(request.external_id, ORG, "ExternalId must be the org ID");
            Ok(Credentials::new(
                "ASIAFAKE",
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + Duration::from_secs(3600)),
                "fake",
            ))
        })
    }
}

/// What the fake Lambda saw: calls per function, and the last request's headers.
#[derive(Default)]
struct Seen {
    calls: Mutex<HashMap<String, usize>>,
    last_headers: Mutex<Option<http::HeaderMap>>,
}

/// Answers by the function name in the path:
/// `throttle-twice` (429 twice, then echo), `throttle-always`, `text` (a non-JSON body),
/// anything else echoes the event.
async fn fake_lambda(State(seen): State<Arc<Seen>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let name = path
        .split("%3A")
        .last()
        .and_then(|tail| tail.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut calls = seen.calls.lock().unwrap();
        let n = calls.entry(name.clone()).or_default();
        *n += 1;
        *n
    };
    *seen.last_headers.lock().unwrap() = Some(request.headers().clone());
    let throttle = || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-amzn-errortype", "TooManyRequestsException"),
                ("retry-after", "7"),
                ("content-type", "application/json"),
            ],
            r#"{"message":"Rate exceeded","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#,
        )
            .into_response()
    };
    match name.as_str() {
        "throttle-always" => throttle(),
        "throttle-twice" if n <= 2 => throttle(),
        "text" => (StatusCode::OK, "plain words").into_response(),
        _ => {
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                StatusCode::OK,
                [("x-amzn-requestid", "fake-request-id")],
                body,
            )
                .into_response()
        }
    }
}

struct Harness {
    gateway: RunningGateway,
    seen: Arc<Seen>,
    sts: Arc<FakeSts>,
}

async fn harness(sts_down: bool) -> Harness {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(fake_lambda)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lambda_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let functions: String = ["throttle-twice", "throttle-always", "text", "echo"]
        .iter()
        .map(|f| {
            format!("{f} = {{ arn = \"arn:aws:lambda:eu-west-1:111122223333:function:{f}\", timeout = \"2s\" }}\n")
        })
        .collect();
    let config = format!(
        "[aws]\nregion = \"us-east-1\"\n[[orgs]]\nid = \"{ORG}\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\ntoken_sha256 = \"{}\"\n[orgs.functions]\n{functions}",
        sha256_hex(SECRET)
    );
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(lambda_url)
        .build();
    let sts = Arc::new(FakeSts {
        calls: AtomicUsize::new(0),
        down: sts_down,
    });
    let gateway = RunningGateway::start_with(&config, sdk, sts.clone()).await;
    Harness { gateway, seen, sts }
}

async fn call(
    h: &Harness,
    function: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(h.gateway.invoke_url(function))
        .header("authorization", basic(ORG, SECRET))
        .header("content-type", "application/json")
        .body(r#"{"customer":"42"}"#);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_within_the_deadline() {
    let h = harness(false).await;
    let (status, _, body) = call(&h, "throttle-twice", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"customer": "42"}));
    assert_eq!(h.seen.calls.lock().unwrap()["throttle-twice"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_throttling_is_429_with_retry_after_before_the_deadline() {
    let h = harness(false).await;
    let started = Instant::now();
    let (status, headers, body) = call(&h, "throttle-always", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "throttled");
    // Lambda's own Retry-After hint is passed on.
    assert_eq!(headers["retry-after"], "7");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up too late"
    );
    let calls = h.seen.calls.lock().unwrap()["throttle-always"];
    assert!((2..=12).contains(&calls), "retried {calls} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genesys_context_travels_as_client_context() {
    let h = harness(false).await;
    let (status, headers, _) = call(
        &h,
        "echo",
        &[
            ("ININ-Organization-Id", ORG),
            ("ININ-Correlation-Id", "corr-77"),
            ("ININ-User-Id", "user-9"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-lambda-request-id"], "fake-request-id");
    let sent = h.seen.last_headers.lock().unwrap().clone().unwrap();
    let context = base64::engine::general_purpose::STANDARD
        .decode(sent["x-amz-client-context"].as_bytes())
        .unwrap();
    let context: Value = serde_json::from_slice(&context).unwrap();
    assert_eq!(
        context["custom"],
        json!({"ININ-Organization-Id": ORG, "ININ-Correlation-Id": "corr-77", "ININ-User-Id": "user-9"})
    );
    // Signed with the org's assumed credentials, for the function's region.
    let authorization = sent["authorization"].to_str().unwrap();
    assert!(
        authorization.contains("Credential=ASIAFAKE/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("/eu-west-1/lambda/aws4_request"),
        "{authorization}"
    );
    assert_eq!(sent["x-amz-security-token"], "token");
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_function_response_is_refused() {
    let h = harness(false).await;
    let (status, _, body) = call(&h, "text", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_function_response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_down_is_503_credentials_unavailable_and_not_hammered() {
    let h = harness(true).await;
    for _ in 0..20 {
        let (status, headers, body) = call(&h, "echo", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "credentials_unavailable");
        assert!(headers.contains_key("retry-after"));
    }
    // The failure is remembered for a backoff; twenty requests did not make twenty calls.
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 1);
    assert!(
        h.seen.calls.lock().unwrap().is_empty(),
        "nothing reached Lambda"
    );
}
