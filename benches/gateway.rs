//! End-to-end load through the gateway, against the direct call to the same fake Lambda in the
//! same run, so results read as ratios. The gateway runs in-process on loopback with a fake STS
//! (credentials never expire during the run) and a fake Lambda endpoint that echoes the event.
//!
//! `cargo bench --bench gateway`; elements/s is requests/s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use base64::Engine;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use genesys_lambda_gateway::config::Config;
use genesys_lambda_gateway::credentials::{AssumeFailure, AssumeRequest, AssumeRole, BoxFuture};
use genesys_lambda_gateway::metrics::Metrics;
use genesys_lambda_gateway::server::{self, Gateway};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An STS that answers at once with credentials valid for a day.
struct InstantSts;

impl AssumeRole for InstantSts {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<Credentials, AssumeFailure>> {
        Box::pin(async move {
            Ok(Credentials::new(
                "ASIABENCH",
                "bench-secret",
                Some(format!("token-{}", request.external_id)),
                Some(SystemTime::now() + Duration::from_secs(86_400)),
                "bench",
            ))
        })
    }
}

/// The fake Lambda: answers every invocation with the event it was sent.
async fn fake_lambda() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|request: hyper::Request<Incoming>| async move {
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn org_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn secret(i: usize) -> String {
    format!("bench-secret-{i}")
}

/// A config with `orgs` orgs, each allowed one function `echo`.
fn config(orgs: usize) -> String {
    let mut text = String::from(
        "[server]\nmax_inflight = 100000\n[aws]\nregion = \"us-east-1\"\n[credentials]\nprefetch = true\nprefetch_concurrency = 64\n",
    );
    for i in 0..orgs {
        let hash = hex::encode(genesys_lambda_gateway::auth::hash_secret(
            secret(i).as_bytes(),
        ));
        text.push_str(&format!(
            "[[orgs]]\nid = \"{}\"\nrole_arn = \"arn:aws:iam::111122223333:role/r{i}\"\ntoken_sha256 = \"{hash}\"\n[orgs.functions]\necho = {{ arn = \"arn:aws:lambda:eu-west-1:111122223333:function:echo\" }}\n",
            org_id(i)
        ));
    }
    text
}

struct Target {
    /// Gateway URL per org, with its Basic credentials.
    gateway: Vec<(hyper::Uri, String)>,
    direct: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

async fn start(orgs: usize) -> Target {
    let lambda = fake_lambda().await;
    let config = Config::parse(&config(orgs)).unwrap();
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{lambda}"))
        .build();
    let metrics = Arc::new(Metrics::new(&prometheus::Registry::new(), true).unwrap());
    let gateway = Gateway::new(config, sdk, Arc::new(InstantSts), metrics.clone()).unwrap();
    // Wait for the prefetch, so the run measures the warm path.
    while (metrics.sts_assume_role.with_label_values(&["ok"]).get() as usize) < orgs {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", public.local_addr().unwrap());
    tokio::spawn(server::run(gateway, public, admin, std::future::pending()));
    let gateway = (0..orgs)
        .map(|i| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                org_id(i),
                secret(i)
            ));
            (
                format!("{url}/v1/functions/echo/invoke").parse().unwrap(),
                format!("Basic {auth}"),
            )
        })
        .collect();
    let direct = format!(
        "http://{lambda}/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A111122223333%3Afunction%3Aecho/invocations"
    )
    .parse()
    .unwrap();
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    Target {
        gateway,
        direct,
        client,
    }
}

/// A JSON event of about `size` bytes.
fn event(size: usize) -> Bytes {
    let filler = size.saturating_sub(40);
    Bytes::from(format!(
        "{{\"customer\":\"42\",\"note\":\"{}\"}}",
        "x".repeat(filler)
    ))
}

/// `total` requests over `concurrency` connections; returns the wall time. Through the
/// gateway, requests go round robin over its orgs.
async fn drive(
    target: &Target,
    via_gateway: bool,
    body: Bytes,
    concurrency: usize,
    total: u64,
) -> Duration {
    let started = Instant::now();
    let per_task = total.div_ceil(concurrency as u64);
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let client = target.client.clone();
        let body = body.clone();
        let requests: Vec<(hyper::Uri, Option<String>)> = (0..per_task as usize)
            .map(|n| {
                if via_gateway {
                    let (uri, auth) =
                        &target.gateway[(task + n * concurrency) % target.gateway.len()];
                    (uri.clone(), Some(auth.clone()))
                } else {
                    (target.direct.clone(), None)
                }
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            for (uri, auth) in requests {
                let mut request =
                    hyper::Request::post(uri).header("content-type", "application/json");
                if let Some(auth) = auth {
                    request = request.header("authorization", auth);
                }
                let response = client
                    .request(request.body(Full::new(body.clone())).unwrap())
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn concurrency(c: &mut Criterion) {
    let rt = runtime();
    let target = rt.block_on(start(1));
    let body = event(226);
    let mut group = c.benchmark_group("e2e_226B");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for conc in [1usize, 16, 64] {
        for (name, via_gateway) in [("direct", false), ("gateway", true)] {
            group.bench_with_input(BenchmarkId::new(name, conc), &conc, |b, &conc| {
                b.to_async(&rt).iter_custom(|iters| {
                    drive(
                        &target,
                        via_gateway,
                        body.clone(),
                        conc,
                        iters.max(conc as u64),
                    )
                });
            });
        }
    }
    group.finish();
}

fn many_orgs(c: &mut Criterion) {
    let rt = runtime();
    let body = event(226);
    let mut group = c.benchmark_group("e2e_orgs");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for orgs in [1usize, 10_000] {
        let target = rt.block_on(start(orgs));
        group.bench_with_input(BenchmarkId::new("gateway", orgs), &orgs, |b, _| {
            b.to_async(&rt)
                .iter_custom(|iters| drive(&target, true, body.clone(), 16, iters.max(16)));
        });
    }
    group.finish();
}

fn payload_sizes(c: &mut Criterion) {
    let rt = runtime();
    let target = rt.block_on(start(1));
    let mut group = c.benchmark_group("e2e_payload");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for size in [256usize, 65_536, 1 << 20, 6_000_000] {
        let body = event(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (name, via_gateway) in [("direct", false), ("gateway", true)] {
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.to_async(&rt).iter_custom(|iters| {
                    drive(&target, via_gateway, body.clone(), 4, iters.max(4))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, concurrency, many_orgs, payload_sizes);
criterion_main!(benches);
