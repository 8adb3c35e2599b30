//! The admin listener: `/metrics` (Prometheus text), `/live`, `/ready`. Never served on the
//! public listener, so operational detail is not exposed to data-action callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{StatusCode, header};

use crate::metrics::Metrics;

pub fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    metrics.render(),
                )
            }),
        )
        .route("/live", get(|| async { "live\n" }))
        .route(
            "/ready",
            get(move || async move {
                if ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready\n").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
                }
            }),
        )
}
