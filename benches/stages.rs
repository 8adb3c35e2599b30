//! Micro-benchmarks of the per-request stages: authentication, routing, ClientContext, SigV4
//! (ours with the cached key, and aws-sigv4 — the SDK's signer — as the baseline), metrics.
//!
//! `cargo bench --bench stages`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use genesys_lambda_gateway::auth::{Authenticator, hash_secret};
use genesys_lambda_gateway::config::Config;
use genesys_lambda_gateway::credentials::{CredentialCache, Session};
use genesys_lambda_gateway::invoke::client_context;
use genesys_lambda_gateway::metrics::Metrics;
use genesys_lambda_gateway::{server, sigv4, tenants};
use http::{HeaderMap, HeaderValue};

const PATH: &str = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A111122223333%3Afunction%3Aecho/invocations";
const BODY: &[u8] = br#"{"customer":"42","conversationId":"c0a8e0f6-3a52-4a1e-9b0e-6c2b6a4d9f00","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn auth(c: &mut Criterion) {
    let orgs: Vec<(String, Vec<[u8; 32]>)> = (0..10_000)
        .map(|i| {
            (
                format!("org-{i}"),
                vec![hash_secret(format!("secret-{i}").as_bytes())],
            )
        })
        .collect();
    let authenticator = Authenticator::new(orgs.iter().map(|(id, h)| (id.as_str(), h.clone())));
    let mut basic = HeaderMap::new();
    let value = base64::engine::general_purpose::STANDARD.encode("org-4242:secret-4242");
    basic.insert(
        "authorization",
        HeaderValue::from_str(&format!("Basic {value}")).unwrap(),
    );
    let mut bearer = HeaderMap::new();
    bearer.insert(
        "authorization",
        HeaderValue::from_static("Bearer secret-4242"),
    );
    c.bench_function("auth/basic_10k_orgs", |b| {
        b.iter(|| authenticator.authenticate(black_box(&basic)))
    });
    c.bench_function("auth/bearer_10k_orgs", |b| {
        b.iter(|| authenticator.authenticate(black_box(&bearer)))
    });
}

/// The org's function by name, as the request path finds it (an org with 50 functions).
fn routing(c: &mut Criterion) {
    let mut text = String::from(
        "[[orgs]]\nid = \"org-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\n\
         token_sha256 = \"0159438a9235d6abde38e49fb98944660d067d6b9b03d8a8f4ee4e522feb62cb\"\n\
         [orgs.functions]\n",
    );
    for i in 0..50 {
        text.push_str(&format!(
            "function-{i} = {{ arn = \"arn:aws:lambda:eu-west-1:111122223333:function:f{i}\" }}\n"
        ));
    }
    let config = Config::parse(&text).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let metrics = Metrics::new(&prometheus::Registry::new(), false).unwrap();
    // Building orgs asks STS for nothing.
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("eu-west-1"))
        .build();
    let cache = CredentialCache::new(
        server::sts(&sdk),
        (&config.credentials).into(),
        Arc::new(metrics),
    );
    let orgs = tenants::build(&config, &cache);
    c.bench_function("routing/function_lookup", |b| {
        b.iter(|| orgs[0].function(black_box("function-42")).is_some())
    });
}

fn context(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "inin-organization-id",
        HeaderValue::from_static("91cf9239-f549-465b-8cad-9b46f1420818"),
    );
    headers.insert(
        "inin-correlation-id",
        HeaderValue::from_static("0b5e1c6a-7f0e-4c5a-9a63-2f6d3f1e0c11"),
    );
    headers.insert(
        "inin-user-id",
        HeaderValue::from_static("5d1c4f0e-0b0e-4c7e-8d1b-0c7e6f3a2b19"),
    );
    c.bench_function("client_context/three_headers", |b| {
        b.iter(|| client_context(black_box(&headers), "91cf9239-f549-465b-8cad-9b46f1420818"))
    });
}

fn signing(c: &mut Criterion) {
    let credentials = Credentials::new(
        "ASIABENCH",
        "bench-secret-key",
        Some("t".repeat(700)),
        None,
        "bench",
    );
    let session = Session::new(credentials.clone());
    let token = "t".repeat(700);
    // Made once per function by the gateway, as here.
    let canonical_path = sigv4::canonical_path(PATH);
    c.bench_function("sigv4/ours_cached_key", |b| {
        b.iter(|| {
            let amz_date = sigv4::amz_date(SystemTime::now());
            let scope = sigv4::Scope {
                amz_date: &amz_date,
                region: "eu-west-1",
                service: "lambda",
            };
            let key = session.signing_key(scope.date(), "eu-west-1");
            let headers = [
                ("x-amz-invocation-type", "RequestResponse"),
                ("x-amz-security-token", token.as_str()),
            ];
            sigv4::authorization(
                "ASIABENCH",
                &key,
                &scope,
                &sigv4::Signable {
                    method: "POST",
                    host: "lambda.eu-west-1.amazonaws.com",
                    canonical_path: &canonical_path,
                    query: "",
                    headers: &headers,
                    payload_sha256: sigv4::sha256_hex(black_box(BODY)).as_str(),
                },
            )
        })
    });
    let identity = credentials.into();
    c.bench_function("sigv4/aws_sigv4_sdk_signer", |b| {
        b.iter(|| {
            let mut settings = SigningSettings::default();
            settings.percent_encoding_mode = PercentEncodingMode::Double;
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("eu-west-1")
                .name("lambda")
                .time(SystemTime::now())
                .settings(settings)
                .build()
                .unwrap()
                .into();
            let url = format!("https://lambda.eu-west-1.amazonaws.com{PATH}");
            let headers = [
                ("host", "lambda.eu-west-1.amazonaws.com"),
                ("x-amz-invocation-type", "RequestResponse"),
            ];
            let request = SignableRequest::new(
                "POST",
                &url,
                headers.into_iter(),
                SignableBody::Bytes(black_box(BODY)),
            )
            .unwrap();
            sign(request, &params).unwrap()
        })
    });
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::new(&prometheus::Registry::new(), true).unwrap();
    c.bench_function("metrics/request_and_duration", |b| {
        b.iter(|| {
            let _inflight = m.inflight("91cf9239-f549-465b-8cad-9b46f1420818");
            m.request(
                "91cf9239-f549-465b-8cad-9b46f1420818",
                "lookup-customer",
                "ok",
            );
            m.request_duration(
                "91cf9239-f549-465b-8cad-9b46f1420818",
                "lookup-customer",
                0.0012,
            );
        })
    });
}

criterion_group!(benches, auth, routing, context, signing, metrics);
criterion_main!(benches);
