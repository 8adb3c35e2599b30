//! Hostile input over real sockets: each class gets its documented status and code, reaches
//! neither STS nor Lambda (counted at the fakes) unless the fault is upstream, and the gateway
//! serves a good request afterwards. The fake Lambda speaks raw TCP so it can also misbehave
//! (reset, garbage, oversize, non-JSON); the fake STS can answer malformed XML.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use base64::Engine;
use genesys_lambda_gateway::credentials::{AssumeFailure, AssumeRequest, AssumeRole, BoxFuture};
use serde_json::Value;
use support::{RunningGateway, basic, sha256_hex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ORG: &str = "acme";
const SECRET: &str = "acme-secret";
/// An org whose ID has `ORG` as a prefix.
const OTHER: &str = "acme-corp";
const OTHER_SECRET: &str = "acme-corp-secret";

/// Counts Lambda invocations; answers by the function name in the path. `/` is STS, answered
/// with malformed XML.
struct FakeAws {
    addr: SocketAddr,
    invocations: AtomicUsize,
}

async fn fake_aws() -> Arc<FakeAws> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(FakeAws {
        addr: listener.local_addr().unwrap(),
        invocations: AtomicUsize::new(0),
    });
    let serving = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let fake = serving.clone();
            tokio::spawn(async move { fake.connection(stream).await });
        }
    });
    fake
}

impl FakeAws {
    async fn connection(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            // Read one request: head, then Content-Length bytes.
            let head_end = loop {
                if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buffer[head_end..head_end + length].to_vec();
            buffer.drain(..head_end + length);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            if !path.starts_with("/2015-03-31/") {
                let xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>";
                let _ = stream
                    .write_all(ok("text/xml", xml.as_bytes()).as_slice())
                    .await;
                continue;
            }
            self.invocations.fetch_add(1, Ordering::SeqCst);
            let function = path
                .rsplit("%3a")
                .next()
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            let reply = match function {
                "reset" => return,
                "garbage" => b"\x00\xffTHIS IS NOT HTTP\r\n\r\n".to_vec(),
                "text" => ok("application/json", b"plain words"),
                "slow" => {
                    tokio::time::sleep(SLOW).await;
                    ok("application/json", &body)
                }
                "huge" => ok(
                    "application/json",
                    format!("\"{}\"", "x".repeat(7 << 20)).as_bytes(),
                ),
                _ => ok("application/json", &body),
            };
            if stream.write_all(&reply).await.is_err() || function == "garbage" {
                return;
            }
        }
    }
}

/// How long the fake's `slow` function takes.
const SLOW: Duration = Duration::from_secs(4);

fn ok(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nx-amzn-requestid: fake\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

struct InstantSts;

impl AssumeRole for InstantSts {
    fn assume_role<'a>(
        &'a self,
        _: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
        Box::pin(async {
            Ok(Credentials::new(
                "ASIAFAKE",
                "fake",
                Some("token".into()),
                Some(SystemTime::now() + Duration::from_secs(3600)),
                "fake",
            ))
        })
    }
}

fn config(server: &str) -> String {
    let functions: String = ["echo", "text", "huge", "reset", "garbage", "slow"]
        .iter()
        .map(|f| format!("{f} = {{ arn = \"arn:aws:lambda:us-east-1:111122223333:function:{f}\", timeout = \"5s\" }}\n"))
        .collect();
    format!(
        "[server]\nmax_body_bytes = 4096\n{server}\n[aws]\nregion = \"us-east-1\"\n\
         [[orgs]]\nid = \"{ORG}\"\nrole_arn = \"arn:aws:iam::111122223333:role/a\"\ntoken_sha256 = \"{}\"\n[orgs.functions]\n{functions}\
         [[orgs]]\nid = \"{OTHER}\"\nrole_arn = \"arn:aws:iam::444455556666:role/b\"\ntoken_sha256 = \"{}\"\n[orgs.functions]\necho = {{ arn = \"arn:aws:lambda:us-east-1:444455556666:function:echo\" }}\n",
        sha256_hex(SECRET),
        sha256_hex(OTHER_SECRET)
    )
}

/// AWS clients pointed at the fake, signing as the emulator's `test` principal.
fn fake_sdk(fake: &FakeAws) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{}", fake.addr))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "test",
            )),
        )
        .build()
}

async fn gateway(fake: &FakeAws, server: &str, sts: Arc<dyn AssumeRole>) -> RunningGateway {
    RunningGateway::start_with(&config(server), fake_sdk(fake), sts).await
}

fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

struct Raw {
    status: u16,
    body: Vec<u8>,
}

/// Sends `request` as bytes and reads until the gateway closes the connection.
async fn raw(addr: &str, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The gateway may answer (and close) before taking all of an oversize request.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| response[i + 4..].to_vec())
        .unwrap_or_default();
    Raw { status, body }
}

/// A POST to `path` with `headers` (each a full `Name: value` line) and `body`.
fn post(path: &str, headers: &[String], body: &str) -> Vec<u8> {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request.into_bytes()
}

fn json_post(path: &str, auth: &str, extra: &[String], body: &str) -> Vec<u8> {
    let mut headers = vec![
        format!("Authorization: {auth}"),
        "Content-Type: application/json".into(),
    ];
    headers.extend_from_slice(extra);
    post(path, &headers, body)
}

const INVOKE: &str = "/v1/functions/echo/invoke";

/// One class of hostile request, sent on a fresh gateway.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// The error code; None where the HTTP layer refuses before the gateway's code runs.
    code: Option<&'static str>,
    /// Whether the fault is upstream (Lambda is reached, once).
    upstream: bool,
}

fn case(name: &'static str, request: Vec<u8>, status: u16, code: Option<&'static str>) -> Case {
    Case {
        name,
        request,
        status,
        code,
        upstream: false,
    }
}

fn cases() -> Vec<Case> {
    let good = basic(ORG, SECRET);
    let chunked_over = {
        let mut r = format!(
            "POST {INVOKE} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nAuthorization: {good}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        for _ in 0..6 {
            // 1000 bytes per chunk: "[" + 498 × "1," + "11]".
            r.push_str(&format!("3e8\r\n[{}11]\r\n", "1,".repeat(498)));
        }
        r.push_str("0\r\n\r\n");
        r.into_bytes()
    };
    let many_headers: Vec<String> = (0..500)
        .map(|i| format!("X-Filler-{i}: {}", "v".repeat(100)))
        .collect();
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let mut invalid_utf8 = json_post(INVOKE, &good, &[], "{\"a\":\"xx\"}");
    let at = invalid_utf8.len() - 4;
    invalid_utf8[at] = 0xff;
    invalid_utf8[at + 1] = 0xfe;
    vec![
        case("no Authorization", post(INVOKE, &["Content-Type: application/json".into()], "{}"), 401, Some("unauthorized")),
        case("Basic without a colon", json_post(INVOKE, &format!("Basic {}", b64("acmesecret")), &[], "{}"), 401, Some("unauthorized")),
        case("Basic with an empty user", json_post(INVOKE, &basic("", SECRET), &[], "{}"), 401, Some("unauthorized")),
        case("Basic with an empty secret", json_post(INVOKE, &basic(ORG, ""), &[], "{}"), 401, Some("unauthorized")),
        case("over-long user", json_post(INVOKE, &basic(&"a".repeat(8000), SECRET), &[], "{}"), 401, Some("unauthorized")),
        case("over-long secret", json_post(INVOKE, &basic(ORG, &"s".repeat(8000)), &[], "{}"), 401, Some("unauthorized")),
        case("Basic that is not base64", json_post(INVOKE, "Basic %%%not-base64%%%", &[], "{}"), 401, Some("unauthorized")),
        case("an unknown scheme", json_post(INVOKE, &format!("Digest {}", b64(SECRET)), &[], "{}"), 401, Some("unauthorized")),
        case("an empty Bearer", json_post(INVOKE, "Bearer ", &[], "{}"), 401, Some("unauthorized")),
        case(
            "two Authorization headers",
            json_post(INVOKE, &good, &[format!("Authorization: {}", basic(OTHER, OTHER_SECRET))], "{}"),
            401,
            Some("unauthorized"),
        ),
        case("another org's secret under this org's ID", json_post(INVOKE, &basic(ORG, OTHER_SECRET), &[], "{}"), 401, Some("unauthorized")),
        case("an org ID that is a prefix of another", json_post(INVOKE, &basic(ORG, OTHER_SECRET), &[], "{}"), 401, Some("unauthorized")),
        case("an org ID extending another", json_post(INVOKE, &basic(OTHER, SECRET), &[], "{}"), 401, Some("unauthorized")),
        case(
            "another org's Bearer secret with this org's header",
            json_post(INVOKE, &format!("Bearer {OTHER_SECRET}"), &[format!("ININ-Organization-Id: {ORG}")], "{}"),
            403,
            Some("org_mismatch"),
        ),
        case(
            "a conflicting ININ-Organization-Id",
            json_post(INVOKE, &good, &[format!("ININ-Organization-Id: {OTHER}")], "{}"),
            403,
            Some("org_mismatch"),
        ),
        case(
            "duplicate ININ-Organization-Id, one matching",
            json_post(INVOKE, &good, &[format!("ININ-Organization-Id: {ORG}"), format!("ININ-Organization-Id: {OTHER}")], "{}"),
            403,
            Some("org_mismatch"),
        ),
        case("`..` as the function name", json_post("/v1/functions/../invoke", &good, &[], "{}"), 404, Some("unknown_function")),
        case("%2F inside the function name", json_post("/v1/functions/echo%2F..%2Fecho/invoke", &good, &[], "{}"), 404, Some("unknown_function")),
        case("%00 in the function name", json_post("/v1/functions/echo%00/invoke", &good, &[], "{}"), 404, Some("unknown_function")),
        case("percent-encoded non-UTF-8 in the name", json_post("/v1/functions/%FF%FE/invoke", &good, &[], "{}"), 404, Some("unknown_function")),
        case("another org's function name", json_post("/v1/functions/text/invoke", &basic(OTHER, OTHER_SECRET), &[], "{}"), 404, Some("unknown_function")),
        case("a path outside the API", json_post("/v1/functions/echo/invoke/extra", &good, &[], "{}"), 404, Some("not_found")),
        case("GET on the invoke path", b"GET /v1/functions/echo/invoke HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n".to_vec(), 405, Some("method_not_allowed")),
        case(
            "a non-JSON content type",
            post(INVOKE, &[format!("Authorization: {good}"), "Content-Type: text/plain".into()], "{}"),
            415,
            Some("unsupported_media_type"),
        ),
        case("a body that is not JSON", json_post(INVOKE, &good, &[], "{\"a\":"), 400, Some("invalid_request")),
        case("invalid UTF-8 inside JSON", invalid_utf8, 400, Some("invalid_request")),
        case("JSON nested 100 levels deep", json_post(INVOKE, &good, &[], &deep), 400, Some("invalid_request")),
        case(
            "Content-Length over the limit",
            json_post(INVOKE, &good, &[], &format!("[{}1]", "1,".repeat(3000))),
            413,
            Some("payload_too_large"),
        ),
        case("a chunked body over the limit after several chunks", chunked_over, 413, Some("payload_too_large")),
        case(
            "Expect: 100-continue with an oversize length",
            format!("POST {INVOKE} HTTP/1.1\r\nHost: g\r\nConnection: close\r\nAuthorization: {good}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 104857600\r\n\r\n").into_bytes(),
            413,
            Some("payload_too_large"),
        ),
        case("a huge header set", json_post(INVOKE, &good, &many_headers, "{}"), 431, None),
        case("raw non-UTF-8 bytes in the request line", b"POST /v1/functions/\xff\xfe/invoke HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(), 400, None),
        Case { upstream: true, ..case("a function answering non-JSON", json_post("/v1/functions/text/invoke", &good, &[], "{}"), 502, Some("invalid_function_response")) },
        Case { upstream: true, ..case("a function answering more than 6 MB", json_post("/v1/functions/huge/invoke", &good, &[], "{}"), 502, Some("invalid_function_response")) },
        Case { upstream: true, ..case("Lambda resetting the connection", json_post("/v1/functions/reset/invoke", &good, &[], "{}"), 502, Some("lambda_error")) },
        Case { upstream: true, ..case("Lambda answering garbage", json_post("/v1/functions/garbage/invoke", &good, &[], "{}"), 502, Some("lambda_error")) },
    ]
}

async fn assert_still_serves(gw: &RunningGateway) {
    let response = reqwest::Client::new()
        .post(gw.invoke_url("echo"))
        .header("authorization", basic(ORG, SECRET))
        .header("content-type", "application/json")
        .body(r#"{"still":"serving"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["still"], "serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_class_gets_its_documented_answer_and_invokes_nothing() {
    let fake = fake_aws().await;
    let cases = cases();
    assert!(cases.len() >= 30, "{} classes", cases.len());
    for case in cases {
        let gw = gateway(&fake, "", Arc::new(InstantSts)).await;
        let addr = gw.url.trim_start_matches("http://").to_owned();
        let before = fake.invocations.load(Ordering::SeqCst);
        let response = raw(&addr, &case.request).await;
        let body = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, case.status, "{}: {body}", case.name);
        if let Some(code) = case.code {
            let json: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", case.name));
            assert_eq!(json["error"]["code"], code, "{}: {body}", case.name);
        }
        let invoked = fake.invocations.load(Ordering::SeqCst) - before;
        assert_eq!(
            invoked,
            usize::from(case.upstream),
            "{}: Lambda invoked {invoked} times",
            case.name
        );
        assert_still_serves(&gw).await;
        gw.stop().await;
    }
}

/// Content-Length and Transfer-Encoding together: hyper frames by Transfer-Encoding and closes
/// the connection after answering (RFC 9112 §6.1), so a request smuggled behind the chunked
/// body is never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_smuggled_behind_conflicting_framing_is_never_run() {
    let fake = fake_aws().await;
    let gw = gateway(&fake, "", Arc::new(InstantSts)).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let good = basic(ORG, SECRET);
    let smuggled =
        String::from_utf8(json_post(INVOKE, &good, &[], r#"{"smuggled":true}"#)).unwrap();
    let request = format!(
        "POST {INVOKE} HTTP/1.1\r\nHost: g\r\nAuthorization: {good}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"
    );
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(!text.contains("smuggled"), "{text}");
    assert_eq!(
        fake.invocations.load(Ordering::SeqCst),
        1,
        "only the chunked request ran"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_and_http_2_prior_knowledge_are_served() {
    let fake = fake_aws().await;
    let gw = gateway(&fake, "", Arc::new(InstantSts)).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut request = json_post(INVOKE, &basic(ORG, SECRET), &[], r#"{"v":"1.0"}"#);
    let line_end = request.iter().position(|&b| b == b'\r').unwrap();
    request.splice(line_end - 3..line_end, b"1.0".iter().copied());
    let response = raw(&addr, &request).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(gw.invoke_url("echo"))
        .header("authorization", basic(ORG, SECRET))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"v":"h2"}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentication_is_refused_for_that_org_only() {
    let fake = fake_aws().await;
    let gw = gateway(&fake, "", Arc::new(InstantSts)).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let guess = |n: usize| json_post(INVOKE, &basic(ORG, &format!("guess-{n}")), &[], "{}");
    for n in 0..genesys_lambda_gateway::guard::MAX_FAILURES as usize {
        assert_eq!(raw(&addr, &guess(n)).await.status, 401);
    }
    // Locked: even the right secret for this org, from this peer, waits out the window.
    let response = raw(&addr, &json_post(INVOKE, &basic(ORG, SECRET), &[], "{}")).await;
    assert_eq!(response.status, 429);
    let json: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["error"]["code"], "too_many_auth_failures");
    // Another org calling from the same address (Genesys' shared egress) is unaffected.
    let response = raw(
        &addr,
        &json_post(INVOKE, &basic(OTHER, OTHER_SECRET), &[], "{}"),
    )
    .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(fake.invocations.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sts_xml_is_credentials_unavailable() {
    let fake = fake_aws().await;
    let sts = genesys_lambda_gateway::server::sts(&fake_sdk(&fake));
    let gw = gateway(&fake, "", sts).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let response = raw(&addr, &json_post(INVOKE, &basic(ORG, SECRET), &[], "{}")).await;
    let body = String::from_utf8_lossy(&response.body);
    assert_eq!(response.status, 503, "{body}");
    assert!(body.contains("credentials_unavailable"), "{body}");
    assert_eq!(fake.invocations.load(Ordering::SeqCst), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_do_not_lock_out_callers() {
    let fake = fake_aws().await;
    // Connections beyond the cap wait in the backlog; idle ones are closed at the header
    // read timeout, so the cap cannot be held forever. 600 stay within the listen backlog
    // (a client past it waits on the kernel's SYN retries, not on the gateway).
    let gw = gateway(
        &fake,
        "max_connections = 100\nheader_read_timeout = \"1s\"",
        Arc::new(InstantSts),
    )
    .await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        raw(
            &addr,
            &json_post(INVOKE, &basic(ORG, SECRET), &[], r#"{"after":"idle"}"#),
        ),
    )
    .await
    .expect("a caller was locked out by idle connections");
    assert_eq!(response.status, 200);
    assert!(started.elapsed() < Duration::from_secs(25));
    drop(idle);
    assert_still_serves(&gw).await;
    gw.stop().await;
}

/// Reads one response (head and `Content-Length` body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-response: {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        buffer.extend_from_slice(&chunk[..n]);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Raw {
        status,
        body: buffer[head_end..].to_vec(),
    }
}

fn keepalive_post(function: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/functions/{function}/invoke HTTP/1.1\r\nHost: gateway\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        basic(ORG, SECRET),
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_close_when_idle_never_mid_request() {
    let fake = fake_aws().await;
    let gw = gateway(
        &fake,
        "header_read_timeout = \"1s\"\nkeepalive_timeout = \"3s\"",
        Arc::new(InstantSts),
    )
    .await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(&keepalive_post("echo", r#"{"n":1}"#))
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);

    // Idle longer than the header read timeout but within the keep-alive timeout: still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream
        .write_all(&keepalive_post("echo", r#"{"n":2}"#))
        .await
        .unwrap();
    let second = read_response(&mut stream).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, br#"{"n":2}"#);

    // A request in flight longer than both timeouts is not cut.
    let started = std::time::Instant::now();
    stream
        .write_all(&keepalive_post("slow", r#"{"n":3}"#))
        .await
        .unwrap();
    let slow = read_response(&mut stream).await;
    assert_eq!(slow.status, 200, "{}", String::from_utf8_lossy(&slow.body));
    assert!(started.elapsed() >= SLOW);

    // Then, idle for the keep-alive timeout: closed. (The gateway's clock starts as the response
    // is ready, a little before the client's below.)
    let idle_from = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("an idle keep-alive connection was never closed")
        .unwrap();
    let idle = idle_from.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_secs(6),
        "closed after {idle:?}"
    );

    // HTTP/2: the same idle limit, as a GOAWAY, even while the client keeps sending control
    // frames (PINGs every 300 ms, more often than the header read timeout) — they are no request.
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(300))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(INVOKE)
        .header("authorization", basic(ORG, SECRET))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    let idle_from = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("an idle HTTP/2 connection was never closed")
        .unwrap();
    // After its GOAWAY the gateway closes the socket; a client frame still in flight (a
    // SETTINGS ack, a WINDOW_UPDATE) may then meet a closed pipe. Either way the connection
    // ended, and not because of a protocol error.
    if let Err(error) = ended {
        let io = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        assert!(
            matches!(
                io,
                Some(std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
            ),
            "HTTP/2 connection ended with {error:?}"
        );
    }
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_secs(6),
        "HTTP/2 connection closed after {idle:?}"
    );
    assert_eq!(fake.invocations.load(Ordering::SeqCst), 4);
    gw.stop().await;
}
