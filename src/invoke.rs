//! Synchronous Lambda invocation in the function's own region, signed with the org's cached
//! credentials, with the Genesys context as a ClientContext and throttling retried within the
//! request's deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::types::{InvocationType, LogType};
use aws_smithy_types::Blob;
use aws_smithy_types::retry::RetryConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::HeaderMap;
use rand::Rng;
use tokio::time::Instant;

use crate::config;
use crate::credentials::error_chain;
use crate::metrics::Metrics;
use crate::tenants::Function;

/// Lambda's ClientContext limit, in bytes of base64.
pub const CLIENT_CONTEXT_MAX: usize = 3583;
const THROTTLE_FIRST_BACKOFF: Duration = Duration::from_millis(50);
const THROTTLE_MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function ran and raised (`X-Amz-Function-Error`).
    #[error("the function failed with {error_type}: {error_message}")]
    Function {
        error_type: String,
        error_message: String,
    },
    /// Lambda kept throttling until the deadline left no room for another try.
    #[error("Lambda throttled the invocation: {0}")]
    Throttled(String, Duration),
    /// Lambda answered with an error (not found, access denied, …).
    #[error("Lambda refused the invocation: {code}: {message}")]
    Aws { code: String, message: String },
    /// Lambda could not be reached or did not answer.
    #[error("Lambda could not be reached: {0}")]
    Unreachable(String),
    /// The function answered something other than JSON.
    #[error("the function's response is not JSON: {0}")]
    InvalidResponse(String),
}

impl InvokeError {
    /// A fixed label for the `kind` of `glg_lambda_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Function { .. } => "function_error",
            InvokeError::Throttled(..) => "throttled",
            InvokeError::Aws { .. } => "aws",
            InvokeError::Unreachable(_) => "unreachable",
            InvokeError::InvalidResponse(_) => "invalid_response",
        }
    }
}

/// What a successful invocation returns.
#[derive(Debug)]
pub struct Invoked {
    pub payload: Bytes,
    pub lambda_request_id: Option<String>,
    /// An `Event` invocation Lambda queued: there is no payload, only its request ID.
    pub accepted: bool,
}

/// One Lambda client per region, all built from one `SdkConfig` and so sharing its HTTP client
/// (connection pool, TLS config).
pub struct Invoker {
    base: aws_config::SdkConfig,
    clients: std::sync::RwLock<HashMap<String, aws_sdk_lambda::Client>>,
    metrics: Arc<Metrics>,
}

impl Invoker {
    pub fn new(base: aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            base,
            clients: Default::default(),
            metrics,
        }
    }

    /// The client for `region`, made on first use.
    pub fn client(&self, region: &str) -> aws_sdk_lambda::Client {
        if let Some(client) = self
            .clients
            .read()
            .expect("lambda clients lock")
            .get(region)
        {
            return client.clone();
        }
        let config = aws_sdk_lambda::config::Builder::from(&self.base)
            .region(aws_sdk_lambda::config::Region::new(region.to_owned()))
            // Throttling is retried here, within the request's deadline; other errors are
            // answered at once so Genesys sees them while the contact is still waiting.
            .retry_config(RetryConfig::disabled())
            .build();
        let client = aws_sdk_lambda::Client::from_conf(config);
        self.clients
            .write()
            .expect("lambda clients lock")
            .entry(region.to_owned())
            .or_insert(client)
            .clone()
    }

    /// Invokes `function` (RequestResponse) with `payload`, retrying throttling only while the
    /// deadline leaves room for it.
    pub async fn invoke(
        &self,
        function: &Function,
        credentials: Credentials,
        payload: Bytes,
        client_context: Option<String>,
        deadline: Instant,
    ) -> Result<Invoked, InvokeError> {
        let client = self.client(&function.arn.region);
        let histogram = self
            .metrics
            .lambda_invoke_duration
            .with_label_values(&[&function.arn.region]);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = client
                .invoke()
                .function_name(&function.unqualified_arn)
                .set_qualifier(function.qualifier.clone())
                .invocation_type(match function.invocation_type {
                    config::InvocationType::RequestResponse => InvocationType::RequestResponse,
                    config::InvocationType::Event => InvocationType::Event,
                })
                .set_log_type(function.log_tail.then_some(LogType::Tail))
                .set_client_context(client_context.clone())
                .payload(Blob::new(payload.to_vec()))
                .customize()
                .config_override(
                    aws_sdk_lambda::config::Builder::default()
                        .credentials_provider(credentials.clone()),
                )
                .send()
                .await;
            histogram.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(out) => {
                    let lambda_request_id = out.request_id().map(str::to_owned);
                    if let Some(tail) = out.log_result.as_deref() {
                        log_tail(function, tail);
                    }
                    if function.invocation_type == config::InvocationType::Event {
                        return Ok(Invoked {
                            payload: Bytes::new(),
                            lambda_request_id,
                            accepted: true,
                        });
                    }
                    let body = out.payload.map(Blob::into_inner).unwrap_or_default();
                    if out.function_error.is_some() {
                        return Err(function_error(&body));
                    }
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                        return Err(InvokeError::InvalidResponse(e.to_string()));
                    }
                    return Ok(Invoked {
                        payload: Bytes::from(body),
                        lambda_request_id,
                        accepted: false,
                    });
                }
                Err(SdkError::ServiceError(e)) if e.err().is_too_many_requests_exception() => {
                    let SdkInvokeError::TooManyRequestsException(throttle) = e.err() else {
                        unreachable!("checked by the guard");
                    };
                    let hinted = throttle
                        .retry_after_seconds()
                        .and_then(|s| s.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let pause = throttle_backoff(attempt);
                    if Instant::now() + pause >= deadline {
                        let message = throttle.message().unwrap_or("Rate exceeded").to_owned();
                        return Err(InvokeError::Throttled(
                            message,
                            hinted.unwrap_or(Duration::from_secs(1)),
                        ));
                    }
                    tracing::debug!(
                        attempt,
                        pause_ms = pause.as_millis() as u64,
                        "Lambda throttled; retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(lambda_failure(e)),
            }
        }
    }
}

impl Invoker {
    /// `Invoke` with `InvocationType=DryRun`: Lambda checks that the function exists and that
    /// the credentials may invoke it, without running it.
    pub async fn dry_run(
        &self,
        function: &Function,
        credentials: Credentials,
    ) -> Result<(), InvokeError> {
        self.client(&function.arn.region)
            .invoke()
            .function_name(&function.unqualified_arn)
            .set_qualifier(function.qualifier.clone())
            .invocation_type(InvocationType::DryRun)
            .customize()
            .config_override(
                aws_sdk_lambda::config::Builder::default().credentials_provider(credentials),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(lambda_failure)
    }
}

/// The function's log tail (base64, at most 4 KB) goes to the debug log, never the response.
fn log_tail(function: &Function, tail: &str) {
    match STANDARD.decode(tail) {
        Ok(bytes) => tracing::debug!(
            function = %function.name,
            log_tail = %String::from_utf8_lossy(&bytes),
            "function log tail"
        ),
        Err(e) => tracing::debug!(function = %function.name, error = %e, "unreadable log tail"),
    }
}

fn throttle_backoff(attempt: u32) -> Duration {
    let base = THROTTLE_FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(THROTTLE_MAX_BACKOFF);
    base.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// Reads `{"errorType": …, "errorMessage": …}` from a failed function's payload.
fn function_error(body: &[u8]) -> InvokeError {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    let parsed: Option<Payload> = serde_json::from_slice(body).ok();
    let (error_type, error_message) = parsed
        .map(|p| (p.error_type, p.error_message))
        .unwrap_or_default();
    InvokeError::Function {
        error_type: error_type.unwrap_or_else(|| "Unhandled".into()),
        error_message: error_message
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(1024).collect()),
    }
}

fn lambda_failure(err: SdkError<SdkInvokeError>) -> InvokeError {
    match &err {
        SdkError::ServiceError(service) => InvokeError::Aws {
            code: service.err().code().unwrap_or("Unknown").to_owned(),
            message: service.err().message().unwrap_or("no message").to_owned(),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            InvokeError::Unreachable(error_chain(&err))
        }
        SdkError::ResponseError(_) => InvokeError::Unreachable(error_chain(&err)),
        _ => InvokeError::Aws {
            code: "Unknown".into(),
            message: error_chain(&err),
        },
    }
}

/// The Genesys context for the function, as Genesys Functions pass it: a ClientContext whose
/// `custom` map holds the request's `ININ-*` headers. `ININ-Organization-Id` is always the
/// authenticated org. Headers that would push it past Lambda's limit are left out, never failed.
pub fn client_context(headers: &HeaderMap, org_id: &str) -> Option<String> {
    let mut custom = serde_json::Map::new();
    custom.insert("ININ-Organization-Id".into(), org_id.into());
    let encoded = |custom: &serde_json::Map<String, serde_json::Value>| {
        let json = serde_json::json!({ "custom": custom }).to_string();
        STANDARD.encode(json)
    };
    let mut current = encoded(&custom);
    if current.len() > CLIENT_CONTEXT_MAX {
        // Only an absurdly long (configured) org ID gets here.
        return None;
    }
    // Well-known headers first, so they are the last to be dropped for size.
    let mut names: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("inin-") && *name != "inin-organization-id")
        .collect();
    names.sort_by_key(|name| (priority(name), *name));
    names.dedup();
    for name in names {
        // A header repeated or not valid text is not passed on: which value is right is unknown.
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            continue;
        };
        let Ok(value) = value.to_str() else { continue };
        custom.insert(canonical(name), value.into());
        let next = encoded(&custom);
        if next.len() > CLIENT_CONTEXT_MAX {
            custom.remove(&canonical(name));
            continue;
        }
        current = next;
    }
    Some(current)
}

fn priority(name: &str) -> u8 {
    match name {
        "inin-correlation-id" => 0,
        "inin-user-id" => 1,
        "inin-home-organization-id" => 2,
        _ => 3,
    }
}

/// `inin-correlation-id` → `ININ-Correlation-Id`, the spelling Genesys uses.
fn canonical(name: &str) -> String {
    name.split('-')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_ascii_uppercase()
            } else {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn decode(context: &str) -> serde_json::Value {
        serde_json::from_slice(&STANDARD.decode(context).unwrap()).unwrap()
    }

    #[test]
    fn inin_headers_become_the_custom_map() {
        let mut headers = HeaderMap::new();
        headers.insert("inin-correlation-id", HeaderValue::from_static("corr-1"));
        headers.insert("inin-user-id", HeaderValue::from_static("user-1"));
        headers.insert("inin-organization-id", HeaderValue::from_static("spoofed"));
        headers.insert("authorization", HeaderValue::from_static("Basic c2VjcmV0"));
        headers.insert("x-other", HeaderValue::from_static("x"));
        let context = decode(&client_context(&headers, "org-1").unwrap());
        assert_eq!(
            context,
            serde_json::json!({"custom": {
                "ININ-Organization-Id": "org-1",
                "ININ-Correlation-Id": "corr-1",
                "ININ-User-Id": "user-1",
            }})
        );
    }

    #[test]
    fn oversize_headers_are_dropped_not_failed() {
        let mut headers = HeaderMap::new();
        headers.insert("inin-correlation-id", HeaderValue::from_static("corr-1"));
        let big = "x".repeat(3000);
        headers.insert("inin-custom-big", HeaderValue::from_str(&big).unwrap());
        headers.insert("inin-custom-small", HeaderValue::from_static("kept"));
        let context = client_context(&headers, "org-1").unwrap();
        assert!(context.len() <= CLIENT_CONTEXT_MAX);
        let custom = &decode(&context)["custom"];
        assert_eq!(custom["ININ-Correlation-Id"], "corr-1");
        assert_eq!(custom["ININ-Custom-Small"], "kept");
        assert!(custom.get("ININ-Custom-Big").is_none());
    }

    #[test]
    fn repeated_headers_are_not_passed() {
        let mut headers = HeaderMap::new();
        headers.append("inin-user-id", HeaderValue::from_static("a"));
        headers.append("inin-user-id", HeaderValue::from_static("b"));
        let custom = &decode(&client_context(&headers, "org-1").unwrap())["custom"];
        assert!(custom.get("ININ-User-Id").is_none());
    }

    #[test]
    fn function_error_payloads() {
        assert_eq!(
            function_error(br#"{"errorType":"ValueError","errorMessage":"boom","stackTrace":[]}"#),
            InvokeError::Function {
                error_type: "ValueError".into(),
                error_message: "boom".into()
            }
        );
        assert_eq!(
            function_error(b"not json"),
            InvokeError::Function {
                error_type: "Unhandled".into(),
                error_message: "not json".into()
            }
        );
    }

    #[test]
    fn throttle_backoff_is_bounded() {
        assert!(throttle_backoff(1) <= THROTTLE_FIRST_BACKOFF);
        assert!(throttle_backoff(40) <= THROTTLE_MAX_BACKOFF);
    }
}
