//! Operating the gateway: signals on the real binary (SIGTERM drain, SIGHUP reload), limits,
//! slow clients and metrics, against the AWS emulator (`AWS_ENDPOINT_URL`).

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::{
    Process, RunningGateway, TestOrg, assert_error, config, eventually, post, provision,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sleep_event(seconds: f64) -> String {
    json!({"mode": "sleep", "seconds": seconds}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let org = provision("121212121212", &[("slow", "us-east-1")]).await;
    let mut gw = Process::start(&config(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"20s\"",
        &[&org],
    ))
    .await;
    let (status, _, body) = post(&gw.invoke_url("slow"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // One worker thread per CPU this process may use (the gateway inherits its affinity).
    let cpus = std::thread::available_parallelism().unwrap();
    assert!(
        gw.logged(&format!("\"workers\":{cpus}")),
        "{}",
        gw.logs_text()
    );

    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            let (url, auth) = (gw.invoke_url("slow"), org.auth());
            tokio::spawn(async move { post(&url, Some(&auth), &[], sleep_event(2.0)).await })
        })
        .collect();
    eventually(Duration::from_secs(5), "six requests in flight", || async {
        gw.metric(&format!("glg_inflight_requests{{org=\"{}\"}}", org.id))
            .await
            == 6.0
    })
    .await;
    gw.signal("TERM");

    // Draining: not ready, and no new connections on the public listener.
    eventually(Duration::from_secs(5), "/ready turns 503", || async {
        let r = reqwest::get(format!("{}/ready", gw.admin_url)).await;
        r.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    let refused = reqwest::Client::new()
        .post(gw.invoke_url("slow"))
        .header("authorization", org.auth())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );

    for request in in_flight {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "an in-flight request was dropped: {body}"
        );
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("the gateway did not exit after draining")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(gw.logged("every in-flight request finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_refuses_an_invalid_one() {
    let a = provision("131313131313", &[("hello", "us-east-1")]).await;
    let b = provision("141414141414", &[("hello", "eu-west-1")]).await;
    let listeners = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"";
    // On one worker, the current-thread runtime: the reload must not need a second one.
    let gw =
        Process::start_with_env(&config(listeners, &[&a]), &[("TOKIO_WORKER_THREADS", "1")]).await;
    assert!(gw.logged("\"workers\":1"), "{}", gw.logs_text());
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&a.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&b.auth()), &[], "{}").await;
    assert_error(status, &body, 401, "unauthorized");

    // A valid config adding org B.
    std::fs::write(&gw.config_path, config(listeners, &[&a, &b])).unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(10), "reload counted", || async {
        gw.metric("glg_config_reload_total{result=\"ok\"}").await == 1.0
    })
    .await;
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&b.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&a.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A's credentials survived the reload: two roles, two AssumeRole calls in all.
    assert_eq!(
        gw.metric("glg_sts_assume_role_total{outcome=\"ok\"}").await,
        2.0
    );

    // An invalid config: refused whole, every problem logged, the old one stays.
    let broken = config(listeners, &[&a, &b]).replace("eu-west-1", "nowhere") + "\n[bogus]\n";
    std::fs::write(&gw.config_path, broken).unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(10), "failed reload counted", || async {
        gw.metric("glg_config_reload_total{result=\"error\"}").await == 1.0
    })
    .await;
    // Log lines reach stdout within the log flush interval.
    eventually(Duration::from_secs(2), "every problem logged", || async {
        gw.logged("reload refused; the previous configuration stays in force")
            && gw.logged("unknown field `bogus`")
    })
    .await;
    for org in [&a, &b] {
        let (status, _, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn limited(org: &TestOrg, max: usize) -> String {
    org.toml().replacen(
        "[orgs.functions]",
        &format!("max_concurrency = {max}\n[orgs.functions]"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_org_hits_its_own_limit_while_another_keeps_succeeding() {
    let noisy = provision("151515151515", &[("slow", "us-east-1")]).await;
    let quiet = provision("161616161616", &[("hello", "us-east-1")]).await;
    let text = format!(
        "[aws]\nregion = \"us-east-1\"\n{}{}",
        limited(&noisy, 2),
        quiet.toml()
    );
    let gw = RunningGateway::start(&text).await;
    // Warm both orgs' credentials.
    for (org, f) in [(&noisy, "slow"), (&quiet, "hello")] {
        let (status, _, body) = post(&gw.invoke_url(f), Some(&org.auth()), &[], "{}").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let burst: Vec<_> = (0..5)
        .map(|_| {
            let (url, auth) = (gw.invoke_url("slow"), noisy.auth());
            tokio::spawn(async move { post(&url, Some(&auth), &[], sleep_event(1.5)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (status, _, body) = post(&gw.invoke_url("hello"), Some(&quiet.auth()), &[], "{}").await;
        assert_eq!(status, StatusCode::OK, "the quiet org was starved: {body}");
    }
    let mut ok = 0;
    for request in burst {
        let (status, headers, body) = request.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_error(status, &body, 429, "org_concurrency_limit");
            assert_eq!(headers["retry-after"], "1");
        }
    }
    assert_eq!(ok, 2, "exactly max_concurrency requests ran");
    let refused = gw
        .metric(&format!(
            "glg_requests_total{{code=\"org_concurrency_limit\",function=\"slow\",org=\"{}\"}}",
            noisy.id
        ))
        .await;
    assert_eq!(refused, 3.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_global_cap_requests_are_shed_with_503() {
    let org = provision("171717171717", &[("slow", "us-east-1")]).await;
    let gw = RunningGateway::start(&config("max_inflight = 1", &[&org])).await;
    let (status, _, body) = post(&gw.invoke_url("slow"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = {
        let (url, auth) = (gw.invoke_url("slow"), org.auth());
        tokio::spawn(async move { post(&url, Some(&auth), &[], sleep_event(1.5)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, body) = post(&gw.invoke_url("slow"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(headers.contains_key("retry-after"));
    // Shed requests are counted and carry a request ID like any other.
    assert_eq!(
        body["error"]["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        gw.metric("glg_requests_total{code=\"overloaded\",function=\"\",org=\"\"}")
            .await,
        1.0
    );
    let (status, _, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_with_its_headers_is_disconnected() {
    let org = provision("181818181818", &[("hello", "us-east-1")]).await;
    let gw = RunningGateway::start(&config("header_read_timeout = \"1s\"", &[&org])).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    // The gateway's clock starts when it accepts, which is after this.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /v1/functions/hello/invoke HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the connection was kept open past the header read timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The gateway still serves everyone else.
    let (status, _, body) = post(&gw.invoke_url("hello"), Some(&org.auth()), &[], "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.stop().await;
}
