//! The admin listener: `/metrics` (Prometheus text), `/live`, `/ready`, and
//! `POST /admin/check?org=ID` (prove an org's AWS wiring at runtime). Never served on the
//! public listener, so operational detail is not exposed to data-action callers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::onboarding;
use crate::server::Gateway;

/// The same org is checked at most this often; each check calls STS and Lambda for real.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);

struct Admin {
    gateway: Arc<Gateway>,
    ready: Arc<AtomicBool>,
    /// When each org was last checked.
    checked: Mutex<HashMap<String, Instant>>,
    /// One check at a time.
    checking: Semaphore,
}

pub fn router(gateway: Arc<Gateway>, ready: Arc<AtomicBool>) -> Router {
    let admin = Arc::new(Admin {
        gateway,
        ready,
        checked: Mutex::new(HashMap::new()),
        checking: Semaphore::new(1),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(readiness))
        .route("/admin/check", post(check))
        .with_state(admin)
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        admin.gateway.metrics.render(),
    )
        .into_response()
}

async fn readiness(State(admin): State<Arc<Admin>>) -> Response {
    if admin.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

#[derive(serde::Deserialize)]
struct CheckQuery {
    org: Option<String>,
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Checks one org of the configuration in force (a reloaded org can be verified at once).
async fn check(State(admin): State<Arc<Admin>>, Query(query): Query<CheckQuery>) -> Response {
    let Some(id) = query.org else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the org query parameter is required".into(),
        );
    };
    let tenancy = admin.gateway.tenancy();
    let Some(org) = tenancy.orgs.iter().find(|o| o.id.eq_ignore_ascii_case(&id)) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "unknown_org",
            format!("no org {id:?} in the configuration"),
        );
    };
    let Ok(_one_at_a_time) = admin.checking.try_acquire() else {
        return too_soon(Duration::from_secs(1), "another check is running");
    };
    {
        let mut checked = admin.checked.lock().expect("admin check lock");
        let now = Instant::now();
        if let Some(last) = checked.get(&org.id)
            && now < *last + CHECK_INTERVAL
        {
            return too_soon(
                *last + CHECK_INTERVAL - now,
                "this org was checked moments ago",
            );
        }
        checked.insert(org.id.clone(), now);
    }
    let report =
        onboarding::check_org(admin.gateway.cache.assumer(), &admin.gateway.invoker, org).await;
    tracing::info!(org = %org.id, ok = report.ok, "admin check");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&report).unwrap_or_default(),
    )
        .into_response()
}

fn too_soon(after: Duration, why: &str) -> Response {
    let mut response = refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited", why.into());
    let secs = after.as_secs_f64().ceil().max(1.0) as u64;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, secs.into());
    response
}
