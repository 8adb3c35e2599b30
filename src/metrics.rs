//! Prometheus metric families, registered on a registry the caller owns (no global state).
//! Label values come only from configuration (org IDs, function names, regions) or fixed sets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Buckets for request and invoke latency: 1 ms to 60 s (the longest data-action timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    /// `code` is the response's error code, or `ok`.
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub lambda_invoke_duration: HistogramVec,
    /// `kind`: function_error, throttled, aws, unreachable, invalid_response.
    pub lambda_errors: IntCounterVec,
    /// `outcome`: ok, rejected, unavailable.
    pub sts_assume_role: IntCounterVec,
    pub sts_assume_role_duration: Histogram,
    /// `result`: hit, miss, refresh, stale, failed.
    pub credentials_cache: IntCounterVec,
    pub requests_waited_on_sts: IntCounter,
    pub inflight: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let m = Metrics {
            registry: registry.clone(),
            requests: IntCounterVec::new(
                Opts::new(
                    "glg_requests_total",
                    "Data-action requests answered, by org, function and code.",
                ),
                &["org", "function", "code"],
            )?,
            request_duration: HistogramVec::new(
                latency("glg_request_duration_seconds", "Whole-request latency."),
                &["org", "function"],
            )?,
            lambda_invoke_duration: HistogramVec::new(
                latency(
                    "glg_lambda_invoke_duration_seconds",
                    "Lambda Invoke latency, per attempt.",
                ),
                &["region"],
            )?,
            lambda_errors: IntCounterVec::new(
                Opts::new(
                    "glg_lambda_errors_total",
                    "Failed Lambda invocations, by kind.",
                ),
                &["org", "function", "kind"],
            )?,
            sts_assume_role: IntCounterVec::new(
                Opts::new(
                    "glg_sts_assume_role_total",
                    "AssumeRole calls made, by outcome.",
                ),
                &["outcome"],
            )?,
            sts_assume_role_duration: Histogram::with_opts(latency(
                "glg_sts_assume_role_duration_seconds",
                "AssumeRole latency.",
            ))?,
            credentials_cache: IntCounterVec::new(
                Opts::new(
                    "glg_credentials_cache_total",
                    "Credential cache lookups, by result.",
                ),
                &["result"],
            )?,
            requests_waited_on_sts: IntCounter::new(
                "glg_requests_waited_on_sts_total",
                "Requests that had to wait for an AssumeRole.",
            )?,
            inflight: IntGauge::new("glg_inflight_requests", "Requests being served.")?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.lambda_invoke_duration.clone()))?;
        registry.register(Box::new(m.lambda_errors.clone()))?;
        registry.register(Box::new(m.sts_assume_role.clone()))?;
        registry.register(Box::new(m.sts_assume_role_duration.clone()))?;
        registry.register(Box::new(m.credentials_cache.clone()))?;
        registry.register(Box::new(m.requests_waited_on_sts.clone()))?;
        registry.register(Box::new(m.inflight.clone()))?;
        let build_info = IntCounterVec::new(
            Opts::new("glg_build_info", "The running version."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .inc();
        registry.register(Box::new(build_info))?;
        Ok(m)
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
