//! The core path end to end against the AWS emulator (`AWS_ENDPOINT_URL`): real SigV4, real
//! cross-account AssumeRole with ExternalId trust policies, real Python Lambdas in two regions.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    RunningGateway, TestOrg, assert_error, basic, config, config_with, create_function,
    create_org_role, post, provision, unique,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokes_a_function_in_another_region_with_the_org_role() {
    let org = provision("111111111111", &[("hello", "eu-west-1")]).await;
    let gw = RunningGateway::start(&config("", &[&org])).await;
    let event = json!({"customer": "42", "nested": {"list": [1, 2, 3]}});
    let (status, headers, body) = post(
        &gw.invoke_url("hello"),
        Some(&org.auth()),
        &[
            ("x-request-id", "req-123"),
            ("ININ-Organization-Id", &org.id),
        ],
        event.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"], "req-123");
    assert!(!headers["x-lambda-request-id"].is_empty());
    assert_eq!(body["event"], event);
    let tag = body["tag"].as_str().unwrap();
    assert!(tag.starts_with("111111111111/eu-west-1/hello-"), "{tag}");
    assert_eq!(
        gw.metric(&format!(
            "glg_requests_total{{code=\"ok\",function=\"hello\",org=\"{}\"}}",
            org.id
        ))
        .await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_org_reaches_only_its_own_functions() {
    let a = provision(
        "222222222222",
        &[("lookup", "us-east-1"), ("only-a", "us-west-2")],
    )
    .await;
    let b = provision("333333333333", &[("lookup", "eu-west-1")]).await;
    let gw = RunningGateway::start(&config("", &[&a, &b])).await;

    let (status, _, body) = post(&gw.invoke_url("lookup"), Some(&a.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["tag"]
            .as_str()
            .unwrap()
            .starts_with("222222222222/us-east-1/"),
        "{body}"
    );

    let (status, _, body) = post(&gw.invoke_url("lookup"), Some(&b.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["tag"]
            .as_str()
            .unwrap()
            .starts_with("333333333333/eu-west-1/"),
        "{body}"
    );

    // B's allow-list has no only-a: B cannot reach A's function by name.
    let (status, _, body) = post(&gw.invoke_url("only-a"), Some(&b.auth()), &[], "{}").await;
    assert_error(status, &body, 404, "unknown_function");
    // B's secret under A's org ID is refused, and so is A claiming to be B.
    let cross = basic(&a.id, &b.secret);
    let (status, _, body) = post(&gw.invoke_url("lookup"), Some(&cross), &[], "{}").await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, _, body) = post(
        &gw.invoke_url("lookup"),
        Some(&a.auth()),
        &[("ININ-Organization-Id", &b.id)],
        "{}",
    )
    .await;
    assert_error(status, &body, 403, "org_mismatch");
    // A bearer secret alone names its org.
    let bearer = format!("Bearer {}", b.secret);
    let (status, _, body) = post(&gw.invoke_url("lookup"), Some(&bearer), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["tag"].as_str().unwrap().starts_with("333333333333/"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_callers_and_bad_bodies_without_invoking() {
    let org = provision("111111111111", &[("hello", "us-east-1")]).await;
    let gw = RunningGateway::start(&config("max_body_bytes = 1024", &[&org])).await;
    let url = gw.invoke_url("hello");

    let wrong = basic(&org.id, "wrong-secret");
    let response = reqwest::Client::new()
        .post(&url)
        .header("authorization", wrong)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let body: Value = response.json().await.unwrap();
    assert_error(StatusCode::UNAUTHORIZED, &body, 401, "unauthorized");

    let (status, _, body) = post(&url, None, &[], "{}").await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, _, body) = post(
        &url,
        Some(&org.auth()),
        &[(
            "ININ-Organization-Id",
            "91cf9239-f549-465b-8cad-9b46f1420818",
        )],
        "{}",
    )
    .await;
    assert_error(status, &body, 403, "org_mismatch");
    let (status, _, body) = post(&gw.invoke_url("nope"), Some(&org.auth()), &[], "{}").await;
    assert_error(status, &body, 404, "unknown_function");
    let (status, _, body) = post(&url, Some(&org.auth()), &[], "x".repeat(2048)).await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, _, body) = post(&url, Some(&org.auth()), &[], "{\"a\":").await;
    assert_error(status, &body, 400, "invalid_request");
    let response = reqwest::Client::new()
        .post(&url)
        .header("authorization", org.auth())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    // None of that reached STS, let alone Lambda.
    assert_eq!(
        gw.metric("glg_sts_assume_role_total{outcome=\"ok\"}").await,
        0.0
    );
    let (status, _, body) = post(&url, Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_policy_expecting_another_external_id_is_assume_role_failed() {
    let mut org = provision("444444444444", &[("hello", "us-east-1")]).await;
    let arn = org.functions[0].1.clone();
    // The role trusts the gateway only with some other org's ID as ExternalId.
    org.role_arn = create_org_role(
        "444444444444",
        &unique("wrong-ext"),
        "another-org-id",
        &[arn],
    )
    .await;
    let gw = RunningGateway::start(&config("", &[&org])).await;
    let (status, headers, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
    assert_error(status, &body, 502, "assume_role_failed");
    assert_eq!(
        body["error"]["details"]["aws_code"], "AccessDenied",
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        gw.metric("glg_sts_assume_role_total{outcome=\"rejected\"}")
            .await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raising_function_is_function_error_with_its_message() {
    let org = provision("111111111111", &[("hello", "us-west-2")]).await;
    let gw = RunningGateway::start(&config("", &[&org])).await;
    let (status, _, body) = post(
        &gw.invoke_url("hello"),
        Some(&org.auth()),
        &[],
        json!({"mode": "raise", "why": "no such customer"}).to_string(),
    )
    .await;
    assert_error(status, &body, 502, "function_error");
    // AWS reports the exception class here; emulators may report a generic handler error.
    let error_type = body["error"]["details"]["errorType"].as_str().unwrap_or("");
    assert!(!error_type.is_empty(), "{body}");
    assert_eq!(
        body["error"]["details"]["errorMessage"], "boom: no such customer",
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_function_is_a_timeout_at_its_deadline() {
    let mut org = provision("111111111111", &[("slow", "us-east-1")]).await;
    org.functions[0].2 = Some("2s");
    let gw = RunningGateway::start(&config("", &[&org])).await;
    // Warm the credentials so the deadline measures the invocation alone.
    let (status, _, body) = post(&gw.invoke_url("slow"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = Instant::now();
    let (status, _, body) = post(
        &gw.invoke_url("slow"),
        Some(&org.auth()),
        &[],
        json!({"mode": "sleep", "seconds": 8}).to_string(),
    )
    .await;
    let elapsed = started.elapsed();
    assert_error(status, &body, 504, "timeout");
    assert!(
        elapsed >= Duration::from_secs(2),
        "answered before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "deadline not enforced: {elapsed:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_side_refusals_are_lambda_error() {
    let account = "555555555555";
    let hello = create_function(account, "us-east-1", &unique("hello"), &[]).await;
    let missing = format!(
        "arn:aws:lambda:us-east-1:{account}:function:{}",
        unique("missing")
    );
    // Exists, but the role was never allowed to invoke it.
    let forbidden = create_function(account, "us-east-1", &unique("forbidden"), &[]).await;
    let id = uuid::Uuid::new_v4().to_string();
    let role_arn = create_org_role(
        account,
        &unique("genesys"),
        &id,
        &[hello.clone(), missing.clone()],
    )
    .await;
    let org = TestOrg {
        id,
        secret: unique("secret"),
        role_arn,
        functions: vec![
            ("hello".into(), hello, None),
            ("missing".into(), missing, None),
            ("forbidden".into(), forbidden, None),
        ],
    };
    let gw = RunningGateway::start(&config("", &[&org])).await;
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = post(&gw.invoke_url("missing"), Some(&org.auth()), &[], "{}").await;
    assert_error(status, &body, 502, "lambda_error");
    assert_eq!(
        body["error"]["details"]["aws_code"], "ResourceNotFoundException",
        "{body}"
    );
    let (status, _, body) = post(&gw.invoke_url("forbidden"), Some(&org.auth()), &[], "{}").await;
    assert_error(status, &body, 502, "lambda_error");
    assert_eq!(
        body["error"]["details"]["aws_code"], "AccessDeniedException",
        "{body}"
    );
    assert_eq!(
        gw.metric(&format!(
            "glg_lambda_errors_total{{function=\"forbidden\",kind=\"aws\",org=\"{}\"}}",
            org.id
        ))
        .await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_assume_the_role_once() {
    let org = provision(
        "666666666666",
        &[("hello", "us-east-1"), ("other", "eu-west-1")],
    )
    .await;
    let gw = RunningGateway::start(&config("", &[&org])).await;
    for i in 0..20 {
        let function = if i % 2 == 0 { "hello" } else { "other" };
        let (status, _, body) = post(
            &gw.invoke_url(function),
            Some(&org.auth()),
            &[],
            json!({"i": i}).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["event"]["i"], i);
    }
    assert_eq!(
        gw.metric("glg_sts_assume_role_total{outcome=\"ok\"}").await,
        1.0
    );
    assert_eq!(gw.metric("glg_requests_waited_on_sts_total").await, 1.0);
    assert_eq!(
        gw.metric("glg_credentials_cache_total{result=\"hit\"}")
            .await,
        19.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer_and_the_public_listener_does_not_serve_them() {
    let org = provision("111111111111", &[("hello", "us-east-1")]).await;
    let gw = RunningGateway::start(&config("", &[&org])).await;
    for path in ["/live", "/ready"] {
        let r = reqwest::get(format!("{}{path}", gw.admin_url))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let metrics = reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("glg_build_info"), "{metrics}");
    let r = reqwest::get(format!("{}/metrics", gw.url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let r = reqwest::get(gw.invoke_url("hello")).await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // Both counted, with no org or function: a data action with a wrong URL shows on the dashboard.
    for code in ["not_found", "method_not_allowed"] {
        let series = format!("glg_requests_total{{code=\"{code}\",function=\"\",org=\"\"}}");
        assert_eq!(gw.metric(&series).await, 1.0, "{series}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_really_re_assumes_the_role() {
    let org = provision("777777777777", &[("hello", "eu-west-1")]).await;
    // 15-minute credentials refreshed 14m57s before expiry: the refresher re-assumes the role
    // three seconds after each load, with no request in between.
    let credentials =
        "session_duration = \"15m\"\nrefresh_before_expiry = \"14m57s\"\nrefresh_jitter = \"0s\"";
    let gw = RunningGateway::start(&config_with("", credentials, &[&org])).await;
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        gw.metric("glg_sts_assume_role_total{outcome=\"ok\"}").await,
        1.0
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.metric("glg_sts_assume_role_total{outcome=\"ok\"}").await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "no background refresh within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        gw.metric("glg_credentials_cache_total{result=\"refresh\"}")
            .await
            >= 1.0
    );
    // The refreshed credentials are real: the emulator accepts them for the invocation.
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(gw.metric("glg_requests_waited_on_sts_total").await, 1.0);
    gw.stop().await;
}
