//! Soak: the release gateway binary under steady load for a bounded time, against a fake STS
//! and a fake Lambda on loopback, with credentials that expire every few minutes so the
//! background refresh runs throughout. Samples the gateway's RSS and open file descriptors and
//! reports growth after warm-up, errors, and the AssumeRole calls made. Run by scripts/soak.
//!
//! Usage: soak --gateway PATH [--duration SECS] [--concurrency N] [--orgs N]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Credentials from the fake STS last this long, so the gateway refreshes them (2 minutes
/// before expiry, plus jitter) about every minute and a half.
const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(210);
const WARM_UP: Duration = Duration::from_secs(60);

struct Args {
    gateway: String,
    duration: Duration,
    concurrency: usize,
    orgs: usize,
}

fn args() -> Args {
    let mut args = Args {
        gateway: String::new(),
        duration: Duration::from_secs(600),
        concurrency: 16,
        orgs: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => args.gateway = value,
            "--duration" => args.duration = Duration::from_secs(value.parse().expect("seconds")),
            "--concurrency" => args.concurrency = value.parse().expect("a number"),
            "--orgs" => args.orgs = value.parse().expect("a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.gateway.is_empty(), "--gateway PATH is required");
    assert!(
        args.duration > WARM_UP,
        "--duration must exceed the 60 s warm-up"
    );
    args
}

/// One fake for both services: form-encoded `Action=AssumeRole` gets STS XML with short-lived
/// credentials; `/2015-03-31/functions/…/invocations` echoes the payload as Lambda would.
async fn fake_aws(assume_calls: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let calls = assume_calls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let calls = calls.clone();
                    async move { Ok::<_, hyper::Error>(answer(request, &calls).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    request: hyper::Request<Incoming>,
    calls: &AtomicU64,
) -> hyper::Response<Full<Bytes>> {
    let lambda = request.uri().path().starts_with("/2015-03-31/functions/");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    if lambda {
        return hyper::Response::builder()
            .header("content-type", "application/json")
            .header("x-amzn-requestid", "soak")
            .body(Full::new(body))
            .unwrap();
    }
    let n = calls.fetch_add(1, Ordering::Relaxed);
    let expiry = humantime::format_rfc3339_seconds(SystemTime::now() + CREDENTIAL_LIFETIME);
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>ASIASOAK{n}</AccessKeyId><SecretAccessKey>secret{n}</SecretAccessKey>\
         <SessionToken>token{n}</SessionToken><Expiration>{expiry}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROA:soak</AssumedRoleId><Arn>arn:aws:sts::111122223333:assumed-role/r/soak</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>soak</RequestId></ResponseMetadata></AssumeRoleResponse>"
    );
    hyper::Response::builder()
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

fn config(orgs: usize, listen: SocketAddr, admin: SocketAddr) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\
         [aws]\nregion = \"us-east-1\"\n\
         [credentials]\nsession_duration = \"15m\"\nrefresh_before_expiry = \"2m\"\nrefresh_jitter = \"30s\"\n\
         [metrics]\norg_label = false\n",
    );
    for i in 0..orgs {
        let hash = genesys_lambda_gateway::sigv4::sha256_hex(format!("secret-{i}").as_bytes());
        let hash = hash.as_str();
        text.push_str(&format!(
            "[[orgs]]\nid = \"org-{i}\"\nrole_arn = \"arn:aws:iam::1111222{i:05}:role/r\"\ntoken_sha256 = \"{hash}\"\n\
             [orgs.functions]\necho = {{ arn = \"arn:aws:lambda:us-east-1:1111222{i:05}:function:echo\", timeout = \"5s\" }}\n"
        ));
    }
    text
}

/// (RSS in KiB, open file descriptors) of `pid`.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

#[tokio::main]
async fn main() {
    let args = args();
    let assume_calls = Arc::new(AtomicU64::new(0));
    let aws = fake_aws(assume_calls.clone()).await;
    let dir = std::env::temp_dir().join(format!("glg-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("gateway.toml");
    // Free loopback ports for the gateway (its log is kept to warnings, so it does not say).
    let (listen, admin) = (free_port(), free_port());
    std::fs::write(&config_path, config(args.orgs, listen, admin)).unwrap();
    let log_path = dir.join("gateway.log");
    let mut child = tokio::process::Command::new(&args.gateway)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config_path)
        .env("AWS_ENDPOINT_URL", format!("http://{aws}"))
        .env("AWS_ACCESS_KEY_ID", "soak")
        .env("AWS_SECRET_ACCESS_KEY", "soak")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for_ready(admin).await;
    eprintln!(
        "soak: gateway pid {pid} on {listen} (admin {admin}), {} orgs, c={}, {} s",
        args.orgs,
        args.concurrency,
        args.duration.as_secs()
    );

    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + args.duration;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, ok, errors) = (client.clone(), ok.clone(), errors.clone());
        let (orgs, url) = (
            args.orgs,
            format!("http://{listen}/v1/functions/echo/invoke"),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < until {
                let org = i % orgs;
                i += 1;
                let auth = base64::engine::general_purpose::STANDARD
                    .encode(format!("org-{org}:secret-{org}"));
                let request = hyper::Request::post(&url)
                    .header("authorization", format!("Basic {auth}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(format!("{{\"n\":{i}}}"))))
                    .unwrap();
                let good =
                    match tokio::time::timeout(Duration::from_secs(10), client.request(request))
                        .await
                    {
                        Ok(Ok(response)) => {
                            let status = response.status();
                            let body = response.into_body().collect().await.map(|b| b.to_bytes());
                            status == 200
                                && body.is_ok_and(|b| b == format!("{{\"n\":{i}}}").as_bytes())
                        }
                        _ => false,
                    };
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let mut samples = Vec::new();
    let mut last_ok = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10).min(until - Instant::now())).await;
        let (rss, fds) = sample(pid);
        let t = started.elapsed().as_secs();
        let done = ok.load(Ordering::Relaxed);
        eprintln!(
            "soak: t={t:>4}s rss={:>6.1} MB fds={fds:>4} req/s={:>6} errors={} assume_role={}",
            rss as f64 / 1024.0,
            (done - last_ok) / 10,
            errors.load(Ordering::Relaxed),
            assume_calls.load(Ordering::Relaxed)
        );
        last_ok = done;
        samples.push((t, rss, fds));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let _ = child.start_kill();

    let warm: Vec<_> = samples
        .iter()
        .filter(|(t, _, _)| *t >= WARM_UP.as_secs())
        .collect();
    let (first, last) = (warm.first().unwrap(), warm.last().unwrap());
    let peak = warm.iter().map(|s| s.1).max().unwrap();
    let growth = (last.1 as f64 - first.1 as f64) / first.1 as f64 * 100.0;
    let fd_range = (
        warm.iter().map(|s| s.2).min().unwrap(),
        warm.iter().map(|s| s.2).max().unwrap(),
    );
    let total = ok.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    println!("requests ok          {total}");
    println!("errors               {errors}");
    println!(
        "assume_role calls    {} ({} orgs, credentials live {} s)",
        assume_calls.load(Ordering::Relaxed),
        args.orgs,
        CREDENTIAL_LIFETIME.as_secs()
    );
    println!(
        "rss after warm-up    {:.1} MB -> {:.1} MB (peak {:.1} MB): {growth:+.2} %",
        first.1 as f64 / 1024.0,
        last.1 as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // Descriptors may fall (idle pooled connections close, the first STS refresh replaces the
    // start-up connections); they must not climb.
    let fd_growth = last.2 as i64 - first.2 as i64;
    println!(
        "open fds after warm-up {} -> {} (range {}..={}): {fd_growth:+}",
        first.2, last.2, fd_range.0, fd_range.1
    );
    let pass = errors == 0 && growth <= 5.0 && fd_growth <= 2 && fd_range.1 <= first.2 + 2;
    println!(
        "result               {}",
        if pass { "PASS" } else { "FAIL" }
    );
    std::process::exit(if pass { 0 } else { 1 });
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits (at most 30 s) for `/ready` on the admin listener.
async fn wait_for_ready(admin: SocketAddr) {
    for _ in 0..300 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream
                .write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply).await;
            if reply.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not become ready within 30 s");
}
