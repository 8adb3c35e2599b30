//! Provisioning on the AWS emulator named by `AWS_ENDPOINT_URL`: orgs' cross-account roles whose
//! trust policy requires the org ID as ExternalId, and Python Lambdas in chosen regions. Shared by
//! the integration tests and the demo (examples/provision-demo.rs).
#![allow(dead_code)]

use std::io::Write;

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};
use aws_smithy_types::Blob;

/// The account whose root the gateway runs as (`test`/`test` on the emulator).
pub const GATEWAY_ACCOUNT: &str = "000000000000";

/// The handler every test function runs. The event steers it: `mode` = `raise` raises,
/// `sleep` sleeps `seconds`, `text` returns a bare string; anything else echoes the event and
/// says which function (by its `GLG_TAG` environment variable) answered.
pub const HANDLER: &str = r#"
import os, time

def handler(event, context):
    mode = event.get("mode") if isinstance(event, dict) else None
    if isinstance(event, dict) and "marker" in event:
        print("log marker " + str(event["marker"]))
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
    // The policies users get in deploy/iam/, with their placeholders filled in: every test
    // that assumes a role proves the shipped trust policy works (and that ExternalId is
    // enforced, where a test sends a wrong one).
    let trust = include_str!("../../deploy/iam/org-role-trust-policy.json")
        .replace(
            "arn:aws:iam::GATEWAY_ACCOUNT_ID:role/genesys-lambda-gateway",
            &format!("arn:aws:iam::{GATEWAY_ACCOUNT}:root"),
        )
        .replace("GENESYS_ORG_ID", external_id);
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
        .expect("create org role");
    if !invokable.is_empty() {
        let mut policy: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/iam/org-role-permissions.json"))
                .expect("deploy/iam/org-role-permissions.json is JSON");
        policy["Statement"][0]["Resource"] = invokable
            .iter()
            .flat_map(|arn| [arn.clone(), format!("{arn}:*")])
            .collect();
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
