//! Synchronous (or queued) Lambda invocation in the function's own region, signed with the
//! org's cached credentials, with the Genesys context as a ClientContext and throttling retried
//! within the request's deadline.
//!
//! The hot path does not go through the SDK's operation machinery: measured, a per-call SDK
//! `Invoke` with per-request credentials cost several times the rest of the gateway (see
//! BENCHMARKS.md). It sends over the keep-alive connections of [`upstream`] and signs with [`sigv4`]
//! using the session's cached signing key. The SDK still resolves the endpoints (its rules:
//! partitions, FIPS, dual-stack, `AWS_ENDPOINT_URL[_LAMBDA]`) and serves the DryRun checks.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_lambda::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::retry::RetryConfig;
use aws_types::service_config::ServiceConfigKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use rand::Rng;
use tokio::time::Instant;

use crate::config;
use crate::credentials::{Session, error_chain};
use crate::metrics::Metrics;
use crate::sigv4;
use crate::tenants::Function;
use crate::upstream;

/// Lambda's ClientContext limit, in bytes of base64.
pub const CLIENT_CONTEXT_MAX: usize = 3583;
/// Lambda answers at most 6 MB; a little more is tolerated, anything beyond is refused.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 64 * 1024;
const THROTTLE_FIRST_BACKOFF: Duration = Duration::from_millis(50);
const THROTTLE_MAX_BACKOFF: Duration = Duration::from_secs(2);
const USER_AGENT: &str = concat!("genesys-lambda-gateway/", env!("CARGO_PKG_VERSION"));

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

/// Where a region's Lambda API answers.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://authority`.
    origin: String,
    /// The base path alone (usually empty), which the signature covers too.
    base_path: String,
    /// The `Host` header (and signed host).
    host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InvokerError {
    #[error("cannot load the system's root certificates for TLS: {0}")]
    Tls(std::io::Error),
}

/// Invokes functions in any region over one connection pool.
pub struct Invoker {
    upstream: upstream::Pool,
    base: aws_config::SdkConfig,
    endpoint_override: Option<String>,
    endpoints: RwLock<HashMap<String, Result<Endpoint, String>>>,
    /// SDK clients, only for the DryRun checks.
    sdk_clients: RwLock<HashMap<String, aws_sdk_lambda::Client>>,
    metrics: Arc<Metrics>,
}

impl Invoker {
    pub fn new(base: aws_config::SdkConfig, metrics: Arc<Metrics>) -> Result<Self, InvokerError> {
        Ok(Self {
            endpoint_override: endpoint_override(&base),
            upstream: upstream::Pool::new(Duration::from_secs(50), 1024)
                .map_err(InvokerError::Tls)?,
            base,
            endpoints: Default::default(),
            sdk_clients: Default::default(),
            metrics,
        })
    }

    /// Resolves (once) where `region`'s Lambda API answers. Called for every configured region
    /// when a configuration is built, so requests never resolve anything.
    pub fn prepare(&self, region: &str) {
        let _ = self.endpoint(region);
    }

    fn endpoint(&self, region: &str) -> Result<Endpoint, InvokeError> {
        if let Some(found) = self.endpoints.read().expect("endpoints lock").get(region) {
            return found.clone().map_err(InvokeError::Unreachable);
        }
        let resolved = resolve_endpoint(region, &self.base, self.endpoint_override.as_deref());
        if let Err(e) = &resolved {
            tracing::error!(region, error = %e, "no Lambda endpoint for region");
        }
        self.endpoints
            .write()
            .expect("endpoints lock")
            .insert(region.to_owned(), resolved.clone());
        resolved.map_err(InvokeError::Unreachable)
    }

    /// `function`'s [`Target`], worked out on its first request. The endpoint of a region
    /// never changes for an invoker, so a function keeps its target for its life.
    fn target<'f>(&self, function: &'f Function) -> Result<&'f Target, InvokeError> {
        if let Some(target) = function.target.get() {
            return Ok(target);
        }
        let endpoint = self.endpoint(&function.arn.region)?;
        let target =
            Target::new(&endpoint, function, &self.upstream, &self.metrics).map_err(|e| {
                InvokeError::Unreachable(format!("no Invoke URL for {}: {e}", function.arn.region))
            })?;
        Ok(function.target.get_or_init(|| target))
    }

    /// Invokes `function` with `payload` as its `invocation_type` says, retrying throttling
    /// only while the deadline leaves room for it.
    pub async fn invoke(
        &self,
        function: &Function,
        session: &Session,
        payload: Bytes,
        client_context: Option<HeaderValue>,
        deadline: Instant,
    ) -> Result<Invoked, InvokeError> {
        let target = self.target(function)?;
        // Base64, so always text.
        let context = client_context
            .as_ref()
            .and_then(|value| Some((value.to_str().ok()?, value)));
        // Hashed once for every attempt; the signature covers it.
        let payload_sha256 = sigv4::sha256_hex(&payload);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = signed_request(
                target,
                function,
                session,
                &payload,
                payload_sha256.as_str(),
                context,
            )?;
            let started = Instant::now();
            let outcome = match target.upstream.send(request, MAX_RESPONSE_BYTES).await {
                Ok((parts, body)) => read_response(function, parts, body),
                Err(upstream::Failure::TooLarge(limit)) => Err(InvokeError::InvalidResponse(
                    format!("larger than {limit} bytes"),
                )),
                Err(e) => Err(InvokeError::Unreachable(error_chain(&e))),
            };
            target.histogram.observe(started.elapsed().as_secs_f64());
            match outcome {
                Err(InvokeError::Throttled(message, hinted)) => {
                    let pause = throttle_backoff(attempt);
                    if Instant::now() + pause >= deadline {
                        return Err(InvokeError::Throttled(message, hinted));
                    }
                    tracing::debug!(
                        attempt,
                        pause_ms = pause.as_millis() as u64,
                        "Lambda throttled; retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// The SDK client for `region`, made on first use (DryRun checks only).
    fn sdk_client(&self, region: &str) -> aws_sdk_lambda::Client {
        if let Some(client) = self
            .sdk_clients
            .read()
            .expect("lambda clients lock")
            .get(region)
        {
            return client.clone();
        }
        let config = aws_sdk_lambda::config::Builder::from(&self.base)
            .region(aws_sdk_lambda::config::Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled())
            .build();
        let client = aws_sdk_lambda::Client::from_conf(config);
        self.sdk_clients
            .write()
            .expect("lambda clients lock")
            .entry(region.to_owned())
            .or_insert(client)
            .clone()
    }

    /// `Invoke` with `InvocationType=DryRun`: Lambda checks that the function exists and that
    /// the credentials may invoke it, without running it.
    pub async fn dry_run(
        &self,
        function: &Function,
        credentials: Credentials,
    ) -> Result<(), InvokeError> {
        self.sdk_client(&function.arn.region)
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

/// The endpoint override as the SDK would take it: set in code, else `AWS_ENDPOINT_URL_LAMBDA`
/// (or the profile's `lambda` section), else `AWS_ENDPOINT_URL` / the profile's `endpoint_url`.
fn endpoint_override(sdk: &aws_config::SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("Lambda")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| sdk.service_config().and_then(|c| c.load_config(key)))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// The SDK's endpoint rules for Lambda in `region`.
fn resolve_endpoint(
    region: &str,
    sdk: &aws_config::SdkConfig,
    endpoint: Option<&str>,
) -> Result<Endpoint, String> {
    let params = Params::builder()
        .region(region)
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .set_endpoint(endpoint.map(str::to_owned))
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = DefaultResolver::new();
    // The default resolver computes its answer at once; its future is ready on first poll.
    let future = pin!(resolver.resolve_endpoint(&params));
    let resolved = match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(resolved) => resolved.map_err(|e| e.to_string())?,
        Poll::Pending => return Err("the endpoint resolver did not answer at once".into()),
    };
    let uri: Uri = resolved
        .url()
        .parse()
        .map_err(|e| format!("{}: {e}", resolved.url()))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{}: not an absolute URL", resolved.url()));
    };
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Endpoint {
        origin: format!("{scheme}://{authority}"),
        base_path,
        host: authority.as_str().to_owned(),
    })
}

static X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
static X_AMZ_CLIENT_CONTEXT: HeaderName = HeaderName::from_static("x-amz-client-context");
static X_AMZ_INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
static X_AMZ_LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");
static X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Where a function's Invoke requests go, resolved once per function (on its first request):
/// the request path does no endpoint lookup, URI parsing or metric label hashing.
pub struct Target {
    /// The connections to the endpoint.
    upstream: Arc<upstream::Host>,
    /// Origin-form: the endpoint's base path, the Invoke path, the query.
    uri: Uri,
    /// The path as the signature covers it: of the endpoint's base path (usually empty), then
    /// the Invoke path.
    canonical_path: String,
    host: String,
    host_header: HeaderValue,
    /// `glg_lambda_invoke_duration_seconds` for the function's region.
    histogram: prometheus::Histogram,
}

impl Target {
    fn new(
        endpoint: &Endpoint,
        function: &Function,
        pool: &upstream::Pool,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let path = format!("{}{}", endpoint.base_path, function.invoke_path);
        let mut uri = path.clone();
        if !function.invoke_query.is_empty() {
            uri.push('?');
            uri.push_str(&function.invoke_query);
        }
        Ok(Self {
            upstream: pool
                .host(&endpoint.origin)
                .map_err(|e| format!("{}: {e}", endpoint.origin))?,
            uri: uri.parse().map_err(|e| format!("{uri}: {e}"))?,
            canonical_path: sigv4::canonical_path(&path),
            host: endpoint.host.clone(),
            host_header: HeaderValue::from_str(&endpoint.host)
                .map_err(|e| format!("{}: {e}", endpoint.host))?,
            histogram: metrics
                .lambda_invoke_duration
                .with_label_values(&[&function.arn.region]),
        })
    }
}

/// The Invoke request, signed. The payload is shared, not copied.
fn signed_request(
    target: &Target,
    function: &Function,
    session: &Session,
    payload: &Bytes,
    payload_sha256: &str,
    client_context: Option<(&str, &HeaderValue)>,
) -> Result<Request<Full<Bytes>>, InvokeError> {
    let unbuildable = |e: &dyn std::fmt::Display| {
        InvokeError::Unreachable(format!("the request could not be built: {e}"))
    };
    let credentials = session.credentials();
    let invocation_type = match function.invocation_type {
        config::InvocationType::RequestResponse => "RequestResponse",
        config::InvocationType::Event => "Event",
    };
    let token = session
        .token_header()
        .transpose()
        .map_err(|e| unbuildable(&e))?;
    // The headers signed beside host and x-amz-date, each sent and listed for the signature.
    let mut signed = [("", ""); sigv4::MAX_HEADERS];
    let mut n = 0;
    let mut headers = HeaderMap::with_capacity(10);
    let mut add = |name: &'static HeaderName, text, value: &HeaderValue| {
        signed[n] = (name.as_str(), text);
        n += 1;
        headers.insert(name.clone(), value.clone());
    };
    if let Some((text, value)) = client_context {
        add(&X_AMZ_CLIENT_CONTEXT, text, value);
    }
    add(
        &X_AMZ_INVOCATION_TYPE,
        invocation_type,
        &HeaderValue::from_static(invocation_type),
    );
    if function.log_tail {
        add(&X_AMZ_LOG_TYPE, "Tail", &HeaderValue::from_static("Tail"));
    }
    if let (Some(text), Some(value)) = (credentials.session_token(), token) {
        add(&X_AMZ_SECURITY_TOKEN, text, value);
    }
    let amz_date = sigv4::amz_date(SystemTime::now());
    let region = function.arn.region.as_str();
    let scope = sigv4::Scope {
        amz_date: &amz_date,
        region,
        service: "lambda",
    };
    let key = session.signing_key(scope.date(), region);
    let authorization = sigv4::authorization(
        credentials.access_key_id(),
        &key,
        &scope,
        &sigv4::Signable {
            method: "POST",
            host: &target.host,
            canonical_path: &target.canonical_path,
            query: &function.invoke_query,
            headers: &signed[..n],
            payload_sha256,
        },
    );
    headers.insert(header::HOST, target.host_header.clone());
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(
        X_AMZ_DATE.clone(),
        HeaderValue::try_from(amz_date).map_err(|e| unbuildable(&e))?,
    );
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::try_from(authorization).map_err(|e| unbuildable(&e))?,
    );
    let mut request = Request::new(Full::new(payload.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers;
    Ok(request)
}

/// Reads Lambda's answer: the payload, a function error, a throttle, or an API error.
fn read_response(
    function: &Function,
    parts: http::response::Parts,
    body: Bytes,
) -> Result<Invoked, InvokeError> {
    if parts.status.is_success()
        && let Some(tail) = parts
            .headers
            .get("x-amz-log-result")
            .and_then(|v| v.to_str().ok())
    {
        log_tail(function, tail);
    }
    classify(parts.status, &parts.headers, body, function.invocation_type)
}

/// Maps a complete Lambda `Invoke` answer to the payload, a function error, a throttle, or an
/// API error. Pure, so it can be fuzzed without a network.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    invocation_type: config::InvocationType,
) -> Result<Invoked, InvokeError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let lambda_request_id = header("x-amzn-requestid").map(str::to_owned);
    if status.is_success() {
        if header("x-amz-function-error").is_some() {
            return Err(function_error(&body));
        }
        if invocation_type == config::InvocationType::Event {
            return Ok(Invoked {
                payload: Bytes::new(),
                lambda_request_id,
                accepted: true,
            });
        }
        if let Err(e) = crate::json::check(&body, crate::json::DEPTH_LIMIT) {
            return Err(InvokeError::InvalidResponse(e.to_string()));
        }
        return Ok(Invoked {
            payload: body,
            lambda_request_id,
            accepted: false,
        });
    }
    let (code, message) = api_error(headers, &body);
    if status == StatusCode::TOO_MANY_REQUESTS || code == "TooManyRequestsException" {
        let hinted = header("retry-after")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        return Err(InvokeError::Throttled(message, hinted));
    }
    Err(InvokeError::Aws { code, message })
}

/// The error code (`x-amzn-errortype`, else the body's type) and message of an API error.
fn api_error(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(alias = "Message", alias = "errorMessage")]
        message: Option<String>,
        #[serde(rename = "__type", alias = "code", alias = "Code")]
        kind: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    // "ResourceNotFoundException:http://internal.amazon.com/coral/…" or "…#ResourceNotFound…".
    let clean = |raw: &str| {
        let raw = raw.split(':').next().unwrap_or(raw);
        raw.rsplit('#').next().unwrap_or(raw).to_owned()
    };
    let code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(clean)
        .or_else(|| parsed.kind.as_deref().map(clean))
        .unwrap_or_else(|| "Unknown".into());
    let message = parsed
        .message
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(512).collect());
    (code, message)
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
pub fn client_context(headers: &HeaderMap, org_id: &str) -> Option<HeaderValue> {
    // The longest JSON whose base64 fits Lambda's limit.
    const MAX_JSON: usize = CLIENT_CONTEXT_MAX / 4 * 3;
    // Any ININ-* header after the well-known ones, by name. Most requests carry none (and then
    // nothing is allocated here).
    let mut others: Vec<&HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with("inin-")
                && **name != ININ_ORGANIZATION_ID
                && !WELL_KNOWN.iter().any(|(known, _)| known == *name)
        })
        .collect();
    others.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut json = String::with_capacity(256);
    json.push_str("{\"custom\":{");
    let org = std::iter::once((Name::Spelled("ININ-Organization-Id"), org_id));
    let well_known = WELL_KNOWN
        .iter()
        .map(|(name, spelled)| (name, Name::Spelled(spelled)));
    let others = others
        .into_iter()
        .map(|name| (name, Name::Lower(name.as_str())));
    let passed = well_known.chain(others).filter_map(|(name, spelled)| {
        // A header repeated or not valid text is not passed on: which value is right is unknown.
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some((spelled, value.to_str().ok()?)),
            _ => None,
        }
    });
    let mut first = true;
    for (name, value) in org.chain(passed) {
        // Written in place; taken back out if it does not fit.
        let mark = json.len();
        if !first {
            json.push(',');
        }
        json.push('"');
        match name {
            Name::Spelled(spelled) => json.push_str(spelled),
            Name::Lower(lower) => push_canonical(&mut json, lower),
        }
        json.push_str("\":");
        crate::json::write_string(&mut json, value).expect("writing to a String cannot fail");
        if json.len() + 2 > MAX_JSON {
            json.truncate(mark);
            if first {
                // Only an absurdly long (configured) org ID gets here.
                return None;
            }
            continue;
        }
        first = false;
    }
    json.push_str("}}");
    // Sized exactly, so the header value takes the bytes over without a copy.
    let mut encoded = vec![0; base64::encoded_len(json.len(), true)?];
    let written = STANDARD.encode_slice(&json, &mut encoded).ok()?;
    debug_assert_eq!(written, encoded.len());
    HeaderValue::from_maybe_shared(Bytes::from(encoded)).ok()
}

static ININ_ORGANIZATION_ID: HeaderName = HeaderName::from_static("inin-organization-id");

/// The ININ headers passed first, in this order, so they are the last to be left out for size;
/// each with the spelling Genesys uses.
static WELL_KNOWN: [(HeaderName, &str); 3] = [
    (
        HeaderName::from_static("inin-correlation-id"),
        "ININ-Correlation-Id",
    ),
    (HeaderName::from_static("inin-user-id"), "ININ-User-Id"),
    (
        HeaderName::from_static("inin-home-organization-id"),
        "ININ-Home-Organization-Id",
    ),
];

/// A header name in a ClientContext: as Genesys spells it, or in lower case as received.
enum Name<'a> {
    Spelled(&'a str),
    Lower(&'a str),
}

/// Appends `inin-correlation-id` as `ININ-Correlation-Id`, the spelling Genesys uses. Header
/// names are tokens: nothing in them needs a JSON escape.
fn push_canonical(out: &mut String, name: &str) {
    for (i, part) in name.split('-').enumerate() {
        if i == 0 {
            out.extend(part.chars().map(|c| c.to_ascii_uppercase()));
            continue;
        }
        out.push('-');
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn decode(context: &HeaderValue) -> serde_json::Value {
        serde_json::from_slice(&STANDARD.decode(context.as_bytes()).unwrap()).unwrap()
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
    fn client_context_text_is_ordered_and_escaped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "inin-zeta",
            HeaderValue::from_static("say \"hi\" \\ \t end"),
        );
        headers.insert("inin-user-id", HeaderValue::from_static("user-1"));
        headers.insert("inin-correlation-id", HeaderValue::from_static("corr-1"));
        headers.insert("inin-alpha", HeaderValue::from_static("a"));
        headers.insert(
            "inin-home-organization-id",
            HeaderValue::from_static("home-1"),
        );
        let context = client_context(&headers, "org-1").unwrap();
        let text = String::from_utf8(STANDARD.decode(context.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"custom":{"ININ-Organization-Id":"org-1","ININ-Correlation-Id":"corr-1","ININ-User-Id":"user-1","ININ-Home-Organization-Id":"home-1","ININ-Alpha":"a","ININ-Zeta":"say \"hi\" \\ \t end"}}"#
        );
    }

    #[test]
    fn well_known_names_are_spelled_as_any_other_would_be() {
        let org = (&ININ_ORGANIZATION_ID, "ININ-Organization-Id");
        for (name, spelled) in WELL_KNOWN.iter().map(|(n, s)| (n, *s)).chain([org]) {
            let mut canonical = String::new();
            push_canonical(&mut canonical, name.as_str());
            assert_eq!(canonical, spelled);
        }
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

    /// Found by the `lambda_response` fuzz target: `1111e11111` was returned as a success.
    #[test]
    fn a_number_out_of_range_is_an_invalid_function_response() {
        let answer = classify(
            StatusCode::OK,
            &HeaderMap::new(),
            Bytes::from_static(b"1111e11111 "),
            config::InvocationType::RequestResponse,
        );
        assert!(
            matches!(answer, Err(InvokeError::InvalidResponse(ref m)) if m.contains("out of range")),
            "{answer:?}"
        );
    }
}
