//! Test and demo support: provisions orgs (cross-account roles whose trust policy requires the
//! org ID as ExternalId, Python Lambdas in chosen regions) on the AWS emulator named by
//! `AWS_ENDPOINT_URL`, and runs the gateway in-process on loopback ports.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};
use aws_smithy_types::Blob;
use genesys_lambda_gateway::config::Config;
use genesys_lambda_gateway::credentials::AssumeRole;
use genesys_lambda_gateway::metrics::Metrics;
use genesys_lambda_gateway::server::{self, Gateway};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The account whose root the gateway runs as (`test`/`test` on the emulator).
pub const GATEWAY_ACCOUNT: &str = "000000000000";

/// The handler every test function runs. The event steers it: `mode` = `raise` raises,
/// `sleep` sleeps `seconds`, `text` returns a bare string; anything else echoes the event and
/// says which function (by its `GLG_TAG` environment variable) answered.
pub const HANDLER: &str = r#"
import os, time

def handler(event, context):
    mode = event.get("mode") if isinstance(event, dict) else None
    if mode == "raise":
        raise ValueError("boom: " + str(event.get("why")))
    if mode == "sleep":
        time.sleep(float(event.get("seconds", 3)))
    return {"tag": os.environ.get("GLG_TAG"), "event": event}
"#;

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL must name a running AWS emulator; run the tests with scripts/test",
    )
}

/// A short random suffix so concurrent tests never share a role or function name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// SDK config acting as the root of `account` (the emulator maps a 12-digit key to it).
fn account_config(account: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                account, "test", None, None, "emulator",
            )),
        )
        .build()
}

fn zip_handler(source: &str) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("index.py", options).unwrap();
        zip.write_all(source.as_bytes()).unwrap();
        zip.finish().unwrap();
    }
    buffer.into_inner()
}

/// Creates, in `account`, a role the gateway may assume only with `external_id`, allowed to
/// invoke `invokable` functions (ARNs). Returns the role ARN.
pub async fn create_org_role(
    account: &str,
    name: &str,
    external_id: &str,
    invokable: &[String],
) -> String {
    let iam = aws_sdk_iam::Client::new(&account_config(account, "us-east-1"));
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{GATEWAY_ACCOUNT}:root") },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } }
        }]
    });
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("create org role");
    if !invokable.is_empty() {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": invokable.iter().flat_map(|arn| [arn.clone(), format!("{arn}:*")]).collect::<Vec<_>>()
            }]
        });
        iam.put_role_policy()
            .role_name(name)
            .policy_name("invoke")
            .policy_document(policy.to_string())
            .send()
            .await
            .expect("put invoke policy");
    }
    role.role.expect("role").arn
}

/// Creates a Python function running [`HANDLER`] in `account`/`region`; returns its ARN.
/// `env` adds environment variables (e.g. the emulator's proxy URL).
pub async fn create_function(
    account: &str,
    region: &str,
    name: &str,
    env: &[(&str, &str)],
) -> String {
    let sdk = account_config(account, region);
    // Like AWS, the emulator wants an execution role the Lambda service may assume.
    let exec_role = aws_sdk_iam::Client::new(&sdk)
        .create_role()
        .role_name(format!("exec-{name}"))
        .assume_role_policy_document(
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": "lambda.amazonaws.com" },
                    "Action": "sts:AssumeRole"
                }]
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create execution role")
        .role
        .expect("role")
        .arn;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let mut variables: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    variables.insert("GLG_TAG".into(), format!("{account}/{region}/{name}"));
    let out = lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .handler("index.handler")
        .role(exec_role)
        .timeout(30)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(Blob::new(zip_handler(HANDLER)))
                .build(),
        )
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(variables))
                .build(),
        )
        .send()
        .await
        .expect("create function");
    out.function_arn.expect("function arn")
}

/// A gateway running in-process on loopback ports, stopped when dropped.
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    pub url: String,
    pub admin_url: String,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningGateway {
    /// Starts the gateway on `config_text` (its listen addresses are replaced by free ports).
    pub async fn start(config_text: &str) -> RunningGateway {
        let config = Config::parse(config_text).expect("test config must be valid");
        let sdk = server::aws_base_config(&config).await.expect("aws config");
        let sts = server::sts(&sdk);
        Self::start_with(config_text, sdk, sts).await
    }

    /// Starts the gateway with a given AWS base config and STS (fakes, to inject faults).
    pub async fn start_with(
        config_text: &str,
        sdk: aws_config::SdkConfig,
        sts: Arc<dyn AssumeRole>,
    ) -> RunningGateway {
        let config = Config::parse(config_text).expect("test config must be valid");
        let metrics =
            Arc::new(Metrics::new(&prometheus::Registry::new(), config.metrics.org_label).unwrap());
        let gateway = Gateway::new(config, sdk, sts, metrics.clone());
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (url, admin_url) = (
            base(public.local_addr().unwrap()),
            base(admin.local_addr().unwrap()),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(gateway.clone(), public, admin, async move {
            let _ = stopped.await;
        }));
        RunningGateway {
            gateway,
            url,
            admin_url,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn invoke_url(&self, function: &str) -> String {
        format!("{}/v1/functions/{function}/invoke", self.url)
    }

    /// Stops the gateway and waits for it to drain.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        task.await.unwrap().unwrap();
    }

    /// A counter or gauge's value from `/metrics` (0 when the series does not exist yet).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Basic credentials as Genesys sends them.
pub fn basic(org: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{org}:{secret}"))
    )
}

pub fn sha256_hex(secret: &str) -> String {
    hex::encode(genesys_lambda_gateway::auth::hash_secret(secret.as_bytes()))
}

/// One org as the tests configure it.
pub struct TestOrg {
    pub id: String,
    pub secret: String,
    pub role_arn: String,
    /// (name in the URL, ARN, optional timeout)
    pub functions: Vec<(String, String, Option<&'static str>)>,
}

impl TestOrg {
    pub fn toml(&self) -> String {
        let functions: String = self
            .functions
            .iter()
            .map(|(name, arn, timeout)| match timeout {
                Some(t) => format!("{name} = {{ arn = \"{arn}\", timeout = \"{t}\" }}\n"),
                None => format!("{name} = {{ arn = \"{arn}\" }}\n"),
            })
            .collect();
        format!(
            "[[orgs]]\nid = \"{}\"\nrole_arn = \"{}\"\ntoken_sha256 = \"{}\"\n[orgs.functions]\n{functions}\n",
            self.id,
            self.role_arn,
            sha256_hex(&self.secret)
        )
    }

    pub fn auth(&self) -> String {
        basic(&self.id, &self.secret)
    }
}

pub fn config(server: &str, orgs: &[&TestOrg]) -> String {
    config_with(server, "", orgs)
}

pub fn config_with(server: &str, credentials: &str, orgs: &[&TestOrg]) -> String {
    let orgs: String = orgs.iter().map(|o| o.toml()).collect();
    format!(
        "[server]\n{server}\n[aws]\nregion = \"us-east-1\"\n[credentials]\n{credentials}\n{orgs}"
    )
}

/// An org in `account` whose role trusts the gateway with ExternalId = its org ID, with one
/// function per (name, region), each invokable by the role.
pub async fn provision(account: &str, functions: &[(&str, &str)]) -> TestOrg {
    let id = uuid::Uuid::new_v4().to_string();
    let mut arns = Vec::new();
    for (name, region) in functions {
        let arn = create_function(account, region, &unique(name), &[]).await;
        arns.push((name.to_string(), arn, None));
    }
    let invokable: Vec<String> = arns.iter().map(|(_, arn, _)| arn.clone()).collect();
    let role_arn = create_org_role(account, &unique("genesys"), &id, &invokable).await;
    TestOrg {
        id,
        secret: unique("secret"),
        role_arn,
        functions: arns,
    }
}

pub async fn post(
    url: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, body)
}

pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["request_id"].as_str().is_some(), "{body}");
}
