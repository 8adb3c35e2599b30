//! Any HTTP answer from STS (status, body) through the SDK's AssumeRole and the gateway's
//! checks: never panics, and credentials are only ever handed out complete and unexpired.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;
use genesys_lambda_gateway::credentials::{AssumeRequest, AssumeRole, Sts};
use libfuzzer_sys::fuzz_target;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    /// The body as given, or wrapped in a well-formed AssumeRole answer around these fields.
    shaped: bool,
    body: String,
    expiration: String,
}

fn answer(input: &Input) -> String {
    if !input.shaped {
        return input.body.clone();
    }
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials>\
         <AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>t</SessionToken>\
         <Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
        input.body, input.expiration
    )
}

fuzz_target!(|input: Input| {
    let Ok(status) = http::StatusCode::from_u16(input.status) else {
        return;
    };
    let body = answer(&input);
    let http = infallible_client_fn(move |_request| {
        http::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(SdkBody::from(body.clone()))
            .unwrap()
    });
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKID", "s", None, None, "fuzz",
        ))
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .http_client(http)
        .build();
    let sts = Sts::new(aws_sdk_sts::Client::from_conf(config));
    let request = AssumeRequest {
        role_arn: "arn:aws:iam::111122223333:role/r".into(),
        external_id: "org".into(),
        session_name: "glg-org".into(),
        duration: Duration::from_secs(3600),
    };
    if let Ok(credentials) = RT.block_on(sts.assume_role(&request)) {
        assert!(!credentials.access_key_id().is_empty());
        assert!(!credentials.secret_access_key().is_empty());
        assert!(credentials.session_token().is_some_and(|t| !t.is_empty()));
        assert!(credentials.expiry().is_some_and(|e| e > SystemTime::now()));
    }
});
