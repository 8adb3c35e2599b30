//! The public listener's one endpoint, `POST /v1/functions/{name}/invoke`: authenticate, bind to
//! one org, resolve the function in its allow-list, read the JSON body, get the org's
//! credentials, invoke, answer. Every failure becomes a JSON error from `error`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::auth::AuthError;
use crate::error::{ErrorParts, RequestError};
use crate::guard;
use crate::invoke::{self, Invoked};
use crate::server::{Gateway, Tenancy};
use crate::tenants::{Function, Org};

pub const ORG_HEADER: &str = "inin-organization-id";
pub const CORRELATION_HEADER: &str = "inin-correlation-id";
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static LAMBDA_REQUEST_ID: HeaderName = HeaderName::from_static("x-lambda-request-id");

/// The public listener's service: `POST /v1/functions/{name}/invoke` behind the global cap of
/// `server.max_inflight` requests; every other path is 404 `not_found`, every other method on
/// the invoke path 405 `method_not_allowed`. There is one route, so no general router: measured,
/// axum's router with tower's load-shed and concurrency-limit layers cost ~6 % of a request's
/// instructions.
#[derive(Clone)]
pub struct PublicService {
    gateway: Arc<Gateway>,
    inflight: Arc<Semaphore>,
}

impl PublicService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let max_inflight = gateway.tenancy().config.server.max_inflight;
        Self {
            gateway,
            inflight: Arc::new(Semaphore::new(max_inflight)),
        }
    }

    /// Answers one request from `peer`. The listener passes hyper's `Incoming` body; any body
    /// will do (the routing fuzz target passes its own).
    pub async fn serve<B>(self, peer: SocketAddr, request: Request<B>) -> Response
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Refused at once rather than queued: a queued data action only times out later.
        let Ok(_slot) = self.inflight.try_acquire() else {
            return self.refuse(RequestError::Overloaded, &request);
        };
        match invoke_segment(request.uri().path()) {
            None => self.refuse(RequestError::NotFound, &request),
            Some(_) if request.method() != Method::POST => {
                let mut response = self.refuse(RequestError::MethodNotAllowed, &request);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                response
            }
            Some(_) => invoke(self.gateway, peer.ip(), request).await,
        }
    }

    /// A request answered before it reached an org (shed, or not the invoke endpoint): logged
    /// with its method and path, and counted with no org or function, like an unauthenticated
    /// one.
    fn refuse<B>(&self, error: RequestError, request: &Request<B>) -> Response {
        let request_id = RequestId::of(request.headers());
        let parts = error.parts();
        let (method, path) = (request.method().as_str(), request.uri().path());
        if parts.status.is_server_error() {
            tracing::warn!(
                code = parts.code, status = parts.status.as_u16(), method, path,
                request_id = request_id.as_str(), error = %error, "request failed"
            );
        } else {
            tracing::info!(
                code = parts.code, status = parts.status.as_u16(), method, path,
                request_id = request_id.as_str(), error = %error, "request refused"
            );
        }
        self.gateway.metrics.request("", "", parts.code);
        error_response(parts, &request_id)
    }
}

/// The `{name}` segment of `/v1/functions/{name}/invoke` (one non-empty segment), as sent.
fn invoke_segment(path: &str) -> Option<&str> {
    let name = path
        .strip_prefix("/v1/functions/")?
        .strip_suffix("/invoke")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The `{name}` of `/v1/functions/{name}/invoke`, percent-decoded; `Some(None)` when the path
/// has that shape but the decoded name is not UTF-8. Borrowed from the path unless it had to be
/// decoded.
fn invoke_name(path: &str) -> Option<Option<Cow<'_, str>>> {
    invoke_segment(path).map(|name| {
        percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .ok()
    })
}

/// What a request resolved to, for its metrics and log line.
#[derive(Default)]
struct Resolved<'a> {
    org: Option<&'a Org>,
    function: Option<&'a Function>,
}

/// Runs an invoke request (its path is the invoke path: see `invoke_segment`).
async fn invoke<B>(gateway: Arc<Gateway>, peer: IpAddr, request: Request<B>) -> Response
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let name = invoke_name(parts.uri.path()).flatten();
    let request_id = RequestId::of(&parts.headers);
    let metrics = &gateway.metrics;
    // The configuration this request runs on to its end, even if a reload swaps it meanwhile.
    let tenancy = gateway.tenancy();
    let mut resolved = Resolved::default();
    let result = handle(
        &gateway,
        &tenancy,
        peer,
        &mut resolved,
        name.as_deref(),
        &parts.headers,
        body,
        started,
    )
    .await;

    let org = resolved.org.map_or("", |o| o.id.as_str());
    let function = resolved.function.map_or("", |f| f.name.as_str());
    let elapsed = started.elapsed();
    let correlation_id = parts
        .headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let response = match result {
        Ok(invoked) => {
            let status = if invoked.accepted { 202 } else { 200 };
            tracing::info!(
                org,
                function,
                code = "ok",
                status,
                duration_ms = elapsed.as_millis() as u64,
                request_id = request_id.as_str(),
                lambda_request_id = invoked.lambda_request_id.as_deref().unwrap_or(""),
                correlation_id,
                "request"
            );
            metrics.request(org, function, "ok");
            success_response(invoked, &request_id)
        }
        Err(error) => {
            let parts = error.parts();
            if parts.status.is_server_error() {
                tracing::warn!(
                    org, function, code = parts.code, status = parts.status.as_u16(),
                    duration_ms = elapsed.as_millis() as u64,
                    request_id = request_id.as_str(), correlation_id, error = %error,
                    "request failed"
                );
            } else {
                tracing::info!(
                    org, function, code = parts.code, status = parts.status.as_u16(),
                    duration_ms = elapsed.as_millis() as u64,
                    request_id = request_id.as_str(), correlation_id, error = %error,
                    "request refused"
                );
            }
            if let RequestError::Invoke(e) = &error {
                metrics.lambda_error(org, function, e.kind());
            }
            metrics.request(org, function, parts.code);
            error_response(parts, &request_id)
        }
    };
    if resolved.org.is_some() {
        metrics.request_duration(org, function, elapsed.as_secs_f64());
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn handle<'a, B>(
    gateway: &Gateway,
    tenancy: &'a Tenancy,
    peer: IpAddr,
    resolved: &mut Resolved<'a>,
    name: Option<&str>,
    headers: &HeaderMap,
    body: B,
    started: Instant,
) -> Result<Invoked, RequestError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The brute-force guard: a peer that keeps failing for one org is refused for a while.
    // The claimed org is worked out only when the guard is refusing someone, or on a failure.
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if gateway.guard.refusing() {
        gateway
            .guard
            .check(peer, &guard::claimed_org(authorization))
            .map_err(RequestError::TooManyAuthFailures)?;
    }
    let index = match tenancy.auth.authenticate(headers) {
        Ok(index) => index,
        Err(e) => {
            if e != AuthError::Missing {
                gateway
                    .guard
                    .failed(peer, &guard::claimed_org(authorization));
            }
            return Err(RequestError::Unauthorized(e));
        }
    };
    let org = &tenancy.orgs[index];
    resolved.org = Some(org);
    let _inflight = gateway.metrics.inflight(&org.id);
    // A caller of org A can never act as org B: a Genesys org header must name the same org.
    for value in headers.get_all(ORG_HEADER) {
        if !value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(org.id.as_bytes())
        {
            return Err(RequestError::OrgMismatch);
        }
    }
    let function = name
        .and_then(|name| org.function(name))
        .ok_or(RequestError::UnknownFunction)?;
    resolved.function = Some(function);
    if !is_json(headers) {
        return Err(RequestError::UnsupportedMediaType);
    }
    // Held until the response is built: a noisy org cannot take every slot of the gateway.
    let _permit = match &org.limit {
        Some(permits) => Some(permits.clone().try_acquire_owned().map_err(|_| {
            RequestError::OrgConcurrencyLimit(
                tenancy.config.orgs[index].max_concurrency.unwrap_or(0),
            )
        })?),
        None => None,
    };
    let limit = tenancy.config.server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RequestError::PayloadTooLarge(limit));
    }
    let deadline = started + function.timeout;
    let work = async {
        let payload = read_body(body, limit).await?;
        let session = gateway.cache.get(&org.credentials).await?;
        let context = invoke::client_context(headers, &org.id);
        Ok(gateway
            .invoker
            .invoke(function, &session, payload, context, deadline)
            .await?)
    };
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(RequestError::Timeout(function.timeout)))
}

async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, RequestError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                RequestError::PayloadTooLarge(limit)
            } else {
                RequestError::InvalidRequest(format!("the body could not be read: {e}"))
            }
        })?
        .to_bytes();
    // Also refuses bytes that are not UTF-8 (RFC 8259), inside strings or out.
    match crate::json::check(&bytes, MAX_JSON_DEPTH) {
        Ok(()) => Ok(bytes),
        Err(e) if matches!(e.reason, crate::json::Reason::TooDeep(_)) => {
            Err(RequestError::InvalidRequest(format!(
                "the body nests JSON deeper than {MAX_JSON_DEPTH} levels"
            )))
        }
        Err(e) => Err(RequestError::InvalidRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// Deepest nesting accepted in a request body. Genesys caps JSON at 50 levels; nothing it sends
/// comes near this, and a function should not have to defend itself against nesting bombs.
pub const MAX_JSON_DEPTH: usize = 64;

/// `application/json` or `application/<anything>+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
    let (prefix, suffix) = (b"application/".as_slice(), b"+json".as_slice());
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() >= prefix.len() + suffix.len()
            && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

/// A request's ID: the caller's `x-request-id` when it is a sane token, else a fresh UUID.
/// Kept as the header value it is sent back as, so a caller's is shared rather than copied.
struct RequestId(HeaderValue);

impl RequestId {
    fn of(headers: &HeaderMap) -> Self {
        let sane = |v: &&HeaderValue| {
            (1..=128).contains(&v.len())
                && v.as_bytes()
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        };
        match headers.get(&REQUEST_ID).filter(sane) {
            Some(value) => Self(value.clone()),
            None => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
                Self(HeaderValue::from_str(text).expect("a UUID is a valid header value"))
            }
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII letters, digits and a few marks get in (see `of`).
        self.0.to_str().unwrap_or_default()
    }
}

fn success_response(invoked: Invoked, request_id: &RequestId) -> Response {
    let (status, body) = if invoked.accepted {
        // An Event invocation: Lambda queued it; its request ID is how to find it later.
        let body = serde_json::json!({
            "status": "accepted",
            "request_id": request_id.as_str(),
            "lambda_request_id": invoked.lambda_request_id,
        });
        (StatusCode::ACCEPTED, Bytes::from(body.to_string()))
    } else {
        (StatusCode::OK, invoked.payload)
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID.clone(), request_id.0.clone());
    if let Some(id) = &invoked.lambda_request_id {
        insert_id(headers, &LAMBDA_REQUEST_ID, id);
    }
    response
}

fn error_response(parts: ErrorParts, request_id: &RequestId) -> Response {
    let mut response = parts.into_response(request_id.as_str());
    response
        .headers_mut()
        .insert(REQUEST_ID.clone(), request_id.0.clone());
    response
}

fn insert_id(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_invoke_path_and_its_name() {
        let name = |path| invoke_name(path);
        assert_eq!(name("/v1/functions/echo/invoke"), Some(Some("echo".into())));
        assert_eq!(
            name("/v1/functions/a%20b%2Fc%zz/invoke"),
            Some(Some("a b/c%zz".into()))
        );
        assert_eq!(name("/v1/functions/%ff/invoke"), Some(None));
        for outside in [
            "/v1/functions//invoke",
            "/v1/functions/invoke",
            "/v1/functions/a/b/invoke",
            "/v1/functions/echo/invoke/",
            "/v1/functions/echo/invoke/extra",
            "/v1/functions/echo",
            "/v2/functions/echo/invoke",
            "/",
        ] {
            assert_eq!(name(outside), None, "{outside}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=UTF-8"
        )])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/vnd.genesys+json"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(is_json(&headers(&[(
            "content-type",
            " APPLICATION/Problem+JSON ;q=1"
        )])));
        assert!(!is_json(&headers(&[("content-type", "application/jsonp")])));
        assert!(!is_json(&headers(&[("content-type", "text/x+json")])));
        assert!(!is_json(&headers(&[("content-type", "application+json")])));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn request_ids_are_propagated_when_sane() {
        let id = |pairs: &[(&str, &str)]| RequestId::of(&headers(pairs)).as_str().to_owned();
        assert_eq!(id(&[("x-request-id", "abc-123")]), "abc-123");
        let generated = id(&[("x-request-id", "has spaces")]);
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
        assert_eq!(generated.len(), 36);
        assert_ne!(id(&[]), id(&[]));
        assert_eq!(id(&[("x-request-id", &"a".repeat(129))]).len(), 36);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_or_not_json_are_refused() {
        let big = Body::from(vec![b' '; 11]);
        assert!(matches!(
            read_body(big, 10).await,
            Err(RequestError::PayloadTooLarge(10))
        ));
        let bad = Body::from("{\"a\":");
        assert!(matches!(
            read_body(bad, 100).await,
            Err(RequestError::InvalidRequest(_))
        ));
        let deep = Body::from("[".repeat(200) + &"]".repeat(200));
        assert!(matches!(
            read_body(deep, 1000).await,
            Err(RequestError::InvalidRequest(_))
        ));
        let at_limit = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(read_body(Body::from(at_limit), 1000).await.is_ok());
        let good = Body::from("{\"a\":[1,2]}");
        assert_eq!(
            read_body(good, 100).await.unwrap(),
            Bytes::from("{\"a\":[1,2]}")
        );
    }
}
