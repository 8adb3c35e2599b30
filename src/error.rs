//! Every way a data-action request can fail, and the one function that maps each to an HTTP
//! status, a stable error code and a message: the documented contract of the error table.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::auth::AuthError;
use crate::credentials::{AssumeFailure, CredentialsError};
use crate::invoke::InvokeError;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("unauthorized: {0}")]
    Unauthorized(AuthError),
    #[error("ININ-Organization-Id does not match the authenticated org")]
    OrgMismatch,
    #[error("no function by that name is allowed for this org")]
    UnknownFunction,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("no answer within the function's {0:?} deadline")]
    Timeout(Duration),
    #[error("this org already has its maximum of {0} requests in flight")]
    OrgConcurrencyLimit(usize),
    #[error("the gateway is at its limit of requests in flight")]
    Overloaded,
    #[error("too many failed authentications; try again later")]
    TooManyAuthFailures(Duration),
}

/// The status, code and message a request error is answered with.
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub details: Option<serde_json::Value>,
}

impl RequestError {
    pub fn parts(&self) -> ErrorParts {
        let parts = |status, code| ErrorParts {
            status,
            code,
            message: self.to_string(),
            retry_after: None,
            details: None,
        };
        match self {
            // Which part of the credentials was wrong is for the log, not for the caller.
            RequestError::Unauthorized(_) => ErrorParts {
                message: "missing or invalid credentials".into(),
                ..parts(StatusCode::UNAUTHORIZED, "unauthorized")
            },
            RequestError::OrgMismatch => parts(StatusCode::FORBIDDEN, "org_mismatch"),
            RequestError::UnknownFunction => parts(StatusCode::NOT_FOUND, "unknown_function"),
            RequestError::NotFound => parts(StatusCode::NOT_FOUND, "not_found"),
            RequestError::MethodNotAllowed => {
                parts(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            RequestError::UnsupportedMediaType => {
                parts(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            RequestError::PayloadTooLarge(_) => {
                parts(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            RequestError::InvalidRequest(_) => parts(StatusCode::BAD_REQUEST, "invalid_request"),
            RequestError::Credentials(CredentialsError::Failed {
                failure,
                retry_after,
                ..
            }) => {
                let (status, code, details) = match failure {
                    AssumeFailure::Rejected { code, .. } => (
                        StatusCode::BAD_GATEWAY,
                        "assume_role_failed",
                        Some(json!({ "aws_code": code })),
                    ),
                    AssumeFailure::Unavailable(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "credentials_unavailable",
                        None,
                    ),
                };
                ErrorParts {
                    retry_after: Some(*retry_after),
                    details,
                    ..parts(status, code)
                }
            }
            RequestError::Invoke(e) => match e {
                InvokeError::Function {
                    error_type,
                    error_message,
                } => ErrorParts {
                    details: Some(
                        json!({ "errorType": error_type, "errorMessage": error_message }),
                    ),
                    ..parts(StatusCode::BAD_GATEWAY, "function_error")
                },
                InvokeError::Throttled(_, retry_after) => ErrorParts {
                    retry_after: Some(*retry_after),
                    ..parts(StatusCode::TOO_MANY_REQUESTS, "throttled")
                },
                InvokeError::Aws { code, .. } => ErrorParts {
                    details: Some(json!({ "aws_code": code })),
                    ..parts(StatusCode::BAD_GATEWAY, "lambda_error")
                },
                InvokeError::Unreachable(_) => parts(StatusCode::BAD_GATEWAY, "lambda_error"),
                InvokeError::InvalidResponse(_) => {
                    parts(StatusCode::BAD_GATEWAY, "invalid_function_response")
                }
            },
            RequestError::Timeout(_) => parts(StatusCode::GATEWAY_TIMEOUT, "timeout"),
            RequestError::OrgConcurrencyLimit(_) => ErrorParts {
                retry_after: Some(Duration::from_secs(1)),
                ..parts(StatusCode::TOO_MANY_REQUESTS, "org_concurrency_limit")
            },
            RequestError::TooManyAuthFailures(retry_after) => ErrorParts {
                retry_after: Some(*retry_after),
                ..parts(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures")
            },
            RequestError::Overloaded => ErrorParts {
                retry_after: Some(Duration::from_secs(1)),
                ..parts(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
            },
        }
    }

    /// The JSON error response: `{"error":{"code","message","request_id"[,"details"]}}`.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        self.parts().into_response(request_id)
    }
}

impl ErrorParts {
    /// The JSON error response of [`RequestError::into_response_with_id`], for a caller that
    /// already has the parts (to log and count them).
    pub fn into_response(self, request_id: &str) -> Response {
        let p = self;
        let mut error = json!({ "code": p.code, "message": p.message, "request_id": request_id });
        if let Some(details) = p.details {
            error["details"] = details;
        }
        let mut response = (
            p.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json!({ "error": error }).to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        if p.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"genesys-lambda-gateway\", charset=\"UTF-8\"",
                ),
            );
        }
        if let Some(after) = p.retry_after {
            // Retry-After takes whole seconds; never advise 0, which invites a tight loop.
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_code(e: RequestError) -> (u16, &'static str) {
        let p = e.parts();
        (p.status.as_u16(), p.code)
    }

    #[test]
    fn error_table() {
        let rejected = CredentialsError::Failed {
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            failure: AssumeFailure::Rejected {
                code: "AccessDenied".into(),
                message: "no".into(),
            },
            retry_after: Duration::from_secs(1),
        };
        let unavailable = CredentialsError::Failed {
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            failure: AssumeFailure::Unavailable("down".into()),
            retry_after: Duration::from_secs(1),
        };
        let cases = [
            (
                RequestError::Unauthorized(AuthError::Rejected),
                401,
                "unauthorized",
            ),
            (RequestError::OrgMismatch, 403, "org_mismatch"),
            (RequestError::UnknownFunction, 404, "unknown_function"),
            (
                RequestError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (RequestError::PayloadTooLarge(10), 413, "payload_too_large"),
            (
                RequestError::InvalidRequest("x".into()),
                400,
                "invalid_request",
            ),
            (rejected.into(), 502, "assume_role_failed"),
            (unavailable.into(), 503, "credentials_unavailable"),
            (
                InvokeError::Function {
                    error_type: "E".into(),
                    error_message: "m".into(),
                }
                .into(),
                502,
                "function_error",
            ),
            (
                InvokeError::Throttled("Rate exceeded".into(), Duration::from_secs(1)).into(),
                429,
                "throttled",
            ),
            (
                InvokeError::Aws {
                    code: "ResourceNotFoundException".into(),
                    message: "m".into(),
                }
                .into(),
                502,
                "lambda_error",
            ),
            (
                InvokeError::Unreachable("x".into()).into(),
                502,
                "lambda_error",
            ),
            (
                InvokeError::InvalidResponse("x".into()).into(),
                502,
                "invalid_function_response",
            ),
            (
                RequestError::Timeout(Duration::from_secs(1)),
                504,
                "timeout",
            ),
            (
                RequestError::OrgConcurrencyLimit(2),
                429,
                "org_concurrency_limit",
            ),
            (RequestError::Overloaded, 503, "overloaded"),
            (
                RequestError::TooManyAuthFailures(Duration::from_secs(5)),
                429,
                "too_many_auth_failures",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(status_code(error), (status, code));
        }
    }

    #[tokio::test]
    async fn responses_carry_the_headers_the_status_promises() {
        let r = RequestError::Unauthorized(AuthError::Missing).into_response_with_id("rid");
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        let r = RequestError::Invoke(InvokeError::Throttled(
            "x".into(),
            Duration::from_millis(10),
        ))
        .into_response_with_id("rid");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "throttled");
        assert_eq!(body["error"]["request_id"], "rid");
    }

    #[test]
    fn the_caller_is_not_told_which_credential_part_was_wrong() {
        for e in [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::Rejected,
        ] {
            assert_eq!(
                RequestError::Unauthorized(e).parts().message,
                "missing or invalid credentials"
            );
        }
    }
}
