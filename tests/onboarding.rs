//! Onboarding an org: `check-config --assume` (AssumeRole + DryRun per function), the runtime
//! check on the admin listener, Event (asynchronous) functions and `log_tail`, against the AWS
//! emulator (`AWS_ENDPOINT_URL`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Process, RunningGateway, TestOrg, config, create_function, create_org_role, eventually, post,
    provision, unique,
};

/// Four orgs, each broken (or not) in one way onboarding goes wrong.
struct Orgs {
    good: TestOrg,
    wrong_external_id: TestOrg,
    no_invoke_permission: TestOrg,
    missing_function: TestOrg,
}

async fn orgs() -> Orgs {
    let account = "191919191919";
    let good = provision(account, &[("hello", "us-east-1"), ("far", "eu-west-1")]).await;

    let mut wrong_external_id = provision(account, &[("hello", "us-east-1")]).await;
    let arn = wrong_external_id.functions[0].1.clone();
    wrong_external_id.role_arn =
        create_org_role(account, &unique("wrong-ext"), "someone-else", &[arn]).await;

    let mut no_invoke_permission = provision(account, &[("hello", "us-west-2")]).await;
    no_invoke_permission.role_arn =
        create_org_role(account, &unique("no-invoke"), &no_invoke_permission.id, &[]).await;

    let id = uuid::Uuid::new_v4().to_string();
    let missing = format!(
        "arn:aws:lambda:us-east-1:{account}:function:{}",
        unique("gone")
    );
    let role_arn = create_org_role(
        account,
        &unique("missing"),
        &id,
        std::slice::from_ref(&missing),
    )
    .await;
    let missing_function = TestOrg {
        id,
        secret: unique("secret"),
        role_arn,
        functions: vec![("gone".into(), missing, None)],
    };
    Orgs {
        good,
        wrong_external_id,
        no_invoke_permission,
        missing_function,
    }
}

fn check_config(path: &std::path::Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_genesys-lambda-gateway"))
        .args(["check-config", "--assume", "--config"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_assume_proves_each_orgs_wiring() {
    let o = orgs().await;
    let text = config(
        "",
        &[
            &o.good,
            &o.wrong_external_id,
            &o.no_invoke_permission,
            &o.missing_function,
        ],
    );
    let dir = std::env::temp_dir().join(unique("glg-onboard"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();

    // The table: one broken org is enough for the distinct exit code.
    let out = check_config(&path, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains(&format!("org {}  [OK]", o.good.id)),
        "{table}"
    );
    assert!(
        table.contains(&format!("org {}  [BROKEN]", o.wrong_external_id.id)),
        "{table}"
    );
    assert!(table.contains("denied (AccessDenied:"), "{table}");
    assert!(table.contains("access denied ("), "{table}");
    assert!(table.contains("not found ("), "{table}");
    assert!(
        !table.contains("secret") && !table.contains("ASIA"),
        "credentials leaked: {table}"
    );

    // The same as JSON.
    let out = check_config(&path, &["--json"]);
    assert_eq!(out.status.code(), Some(78));
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let by_org = |id: &str| reports.iter().find(|r| r["org"] == id).unwrap().clone();
    let good = by_org(&o.good.id);
    assert_eq!(good["ok"], true);
    assert_eq!(good["assume"]["status"], "ok");
    let statuses: Vec<_> = good["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["result"]["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("ok"), json!("ok")], "{good}");
    let wrong = by_org(&o.wrong_external_id.id);
    assert_eq!(wrong["assume"]["status"], "denied");
    assert_eq!(wrong["assume"]["aws_code"], "AccessDenied");
    assert_eq!(wrong["functions"][0]["result"]["status"], "skipped");
    let no_invoke = by_org(&o.no_invoke_permission.id);
    assert_eq!(no_invoke["assume"]["status"], "ok");
    assert_eq!(
        no_invoke["functions"][0]["result"]["status"], "access_denied",
        "{no_invoke}"
    );
    let missing = by_org(&o.missing_function.id);
    assert_eq!(
        missing["functions"][0]["result"]["status"], "not_found",
        "{missing}"
    );

    // One org at a time; a good one passes.
    let out = check_config(&path, &["--org", &o.good.id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = check_config(&path, &["--org", "no-such-org"]);
    assert_eq!(out.status.code(), Some(64));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_checks_an_org_at_runtime_rate_limited() {
    let o = orgs().await;
    let gw = RunningGateway::start(&config("", &[&o.good, &o.wrong_external_id])).await;
    let client = reqwest::Client::new();
    let check = |org: &str| {
        client
            .post(format!("{}/admin/check?org={org}", gw.admin_url))
            .send()
    };

    let r = check(&o.good.id).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let r = check(&o.good.id).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));

    let report: Value = check(&o.wrong_external_id.id)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["assume"]["status"], "denied");
    assert_eq!(
        check("no-such-org").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = client
        .post(format!("{}/admin/check", gw.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Not on the public listener.
    let r = client
        .post(format!("{}/admin/check?org={}", gw.url, o.good.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    gw.stop().await;
}

/// Records what the emulator's proxy mode forwards: (execution request ID, event).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(State(seen): State<Seen>, request: Request) -> String {
    let id = request.headers()["x-amzn-lambda-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    seen.lock()
        .unwrap()
        .push((id, serde_json::from_slice(&body).unwrap()));
    json!({"recorded": true}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_function_answers_202_and_really_runs() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let account = "202020202020";
    let arn = create_function(
        account,
        "eu-west-1",
        &unique("log-event"),
        &[("MINISTACK_LAMBDA_PROXY_URL", &proxy)],
    )
    .await;
    let id = uuid::Uuid::new_v4().to_string();
    let role_arn =
        create_org_role(account, &unique("events"), &id, std::slice::from_ref(&arn)).await;
    let org = TestOrg {
        id,
        secret: unique("secret"),
        role_arn,
        functions: vec![("log-event".into(), arn, None)],
    };
    let text = config("", &[&org]).replace("\" }\n", "\", invocation_type = \"Event\" }\n");
    assert!(text.contains("invocation_type = \"Event\""));
    let gw = RunningGateway::start(&text).await;
    let event = json!({"conversation": unique("c")});
    let (status, headers, body) = post(
        &gw.invoke_url("log-event"),
        Some(&org.auth()),
        &[],
        event.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "accepted");
    let lambda_request_id = body["lambda_request_id"].as_str().unwrap();
    assert!(!lambda_request_id.is_empty());
    assert_eq!(headers["x-lambda-request-id"], lambda_request_id);
    // The side effect: the function ran with the event. (AWS runs it under the request ID it
    // returned; the emulator mints another for the execution, so match the event itself.)
    eventually(Duration::from_secs(15), "the function ran", || async {
        seen.lock().unwrap().iter().any(|(_, seen)| *seen == event)
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_tail_goes_to_the_debug_log_never_the_response() {
    let org = provision("212121212121", &[("hello", "us-east-1")]).await;
    let text = config(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"",
        &[&org],
    )
    .replace("\" }\n", "\", log_tail = true }\n");
    assert!(text.contains("log_tail = true"));
    let gw = Process::start_with_env(&text, &[("RUST_LOG", "genesys_lambda_gateway=debug")]).await;
    let marker = unique("marker");
    let (status, _, body) = post(
        &gw.invoke_url("hello"),
        Some(&org.auth()),
        &[],
        json!({ "marker": marker }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["marker"], marker.as_str());
    assert!(
        !body.to_string().contains("log marker"),
        "the log leaked into the response"
    );
    eventually(
        Duration::from_secs(5),
        "the log tail was logged",
        || async { gw.logged(&format!("log marker {marker}")) && gw.logged("function log tail") },
    )
    .await;

    // Secrets never reach the logs, even at debug level: the org's secret (used right and
    // wrong), a guessed secret, a Bearer secret, and the org's temporary credentials.
    let guess = unique("guessed-secret");
    for auth in [
        support::basic(&org.id, &guess),
        format!("Bearer {}", org.secret),
        format!("Bearer {guess}"),
    ] {
        let _ = post(&gw.invoke_url("hello"), Some(&auth), &[], "{}").await;
    }
    eventually(
        Duration::from_secs(5),
        "the requests were logged",
        || async { gw.logs_text().matches("\"message\":\"request").count() >= 4 },
    )
    .await;
    let logs = gw.logs_text();
    for secret in [org.secret.as_str(), guess.as_str()] {
        assert!(!logs.contains(secret), "a secret was logged");
    }
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", org.id, org.secret))
    };
    assert!(
        !logs.contains(&encoded),
        "the Authorization header was logged"
    );
    for field in [
        "secret_access_key",
        "session_token",
        "SecretAccessKey",
        "SessionToken",
    ] {
        assert!(
            !logs.contains(&format!("{field}\":\"")),
            "{field} was logged"
        );
    }
}
