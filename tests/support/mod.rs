//! Integration-test support: provisioning on the emulator (`aws`), the gateway in-process on
//! loopback ports, the gateway binary as a process, and the orgs the tests configure.
#![allow(dead_code)]

pub mod aws;
pub use aws::*;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use genesys_lambda_gateway::config::Config;
use genesys_lambda_gateway::credentials::AssumeRole;
use genesys_lambda_gateway::metrics::Metrics;
use genesys_lambda_gateway::server::{self, Gateway};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

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
        let gateway = Gateway::new(config, sdk, sts, metrics.clone()).expect("gateway");
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
        scrape(&self.admin_url, series).await
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

/// The gateway binary serving a config file on loopback ports; killed if dropped.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub admin_url: String,
    pub config_path: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub async fn start(config_text: &str) -> Process {
        Self::start_with_env(config_text, &[]).await
    }

    pub async fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Process {
        let dir = std::env::temp_dir().join(unique("glg-proc"));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("gateway.toml");
        std::fs::write(&config_path, config_text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_genesys-lambda-gateway"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addresses_tx, addresses_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut addresses_tx = Some(addresses_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "genesys-lambda-gateway serving"
                    && let Some(tx) = addresses_tx.take()
                {
                    let _ = tx.send((
                        event["listen"].as_str().unwrap().to_owned(),
                        event["admin"].as_str().unwrap().to_owned(),
                    ));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (listen, admin) = tokio::time::timeout(Duration::from_secs(30), addresses_rx)
            .await
            .expect("the gateway did not start within 30 s")
            .expect("the gateway exited before serving");
        Process {
            child,
            url: format!("http://{listen}"),
            admin_url: format!("http://{admin}"),
            config_path,
            logs,
        }
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn invoke_url(&self, function: &str) -> String {
        format!("{}/v1/functions/{function}/invoke", self.url)
    }

    pub async fn metric(&self, series: &str) -> f64 {
        scrape(&self.admin_url, series).await
    }

    pub fn logs_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A counter or gauge's value from the admin listener's `/metrics` (0 when the series does not
/// exist yet).
pub async fn scrape(admin_url: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{admin_url}/metrics"))
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
