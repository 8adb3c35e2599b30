//! Prometheus metric families, registered on a registry the caller owns (no global state).
//! Label values come only from configuration (org IDs, function names, regions) or fixed sets;
//! the `org` label can be switched off for deployments with very many orgs.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for request and invoke latency: 1 ms to 60 s (the longest data-action timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    org_label: bool,
    /// `code` is the response's error code, or `ok`.
    requests: IntCounterVec,
    request_duration: HistogramVec,
    pub lambda_invoke_duration: HistogramVec,
    /// `kind`: function_error, throttled, aws, unreachable, invalid_response.
    lambda_errors: IntCounterVec,
    /// `outcome`: ok, rejected, unavailable.
    pub sts_assume_role: IntCounterVec,
    pub sts_assume_role_duration: Histogram,
    /// `result`: hit, miss, refresh, stale, failed.
    pub credentials_cache: IntCounterVec,
    pub requests_waited_on_sts: IntCounter,
    inflight: IntGaugeVec,
    /// `result`: ok, error.
    pub config_reload: IntCounterVec,
}

impl Metrics {
    /// Registers every family on `registry`; with `org_label` false, no series carries an org.
    pub fn new(registry: &Registry, org_label: bool) -> prometheus::Result<Self> {
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let with_org = |labels: &[&'static str]| -> Vec<&'static str> {
            let mut all = Vec::with_capacity(labels.len() + 1);
            if org_label {
                all.push("org");
            }
            all.extend_from_slice(labels);
            all
        };
        let m = Metrics {
            registry: registry.clone(),
            org_label,
            requests: IntCounterVec::new(
                Opts::new(
                    "glg_requests_total",
                    "Data-action requests answered, by code (`ok` or the error code).",
                ),
                &with_org(&["function", "code"]),
            )?,
            request_duration: HistogramVec::new(
                latency(
                    "glg_request_duration_seconds",
                    "Whole-request latency of authenticated requests.",
                ),
                &with_org(&["function"]),
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
                &with_org(&["function", "kind"]),
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
                    "Credential cache lookups and refreshes, by result.",
                ),
                &["result"],
            )?,
            requests_waited_on_sts: IntCounter::new(
                "glg_requests_waited_on_sts_total",
                "Requests that had to wait for an AssumeRole.",
            )?,
            inflight: IntGaugeVec::new(
                Opts::new(
                    "glg_inflight_requests",
                    "Authenticated requests being served.",
                ),
                &with_org(&[]),
            )?,
            config_reload: IntCounterVec::new(
                Opts::new(
                    "glg_config_reload_total",
                    "Configuration reloads (SIGHUP), by result.",
                ),
                &["result"],
            )?,
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
        registry.register(Box::new(m.config_reload.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new("glg_build_info", "The running version (always 1)."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        Ok(m)
    }

    /// Label values, with the org first when the org label is on.
    fn labels<'a>(&self, org: &'a str, rest: &[&'a str]) -> Labels<'a> {
        let mut values = [org, "", "", ""];
        values[1..=rest.len()].copy_from_slice(rest);
        Labels {
            values,
            start: usize::from(!self.org_label),
            end: rest.len() + 1,
        }
    }

    pub fn request(&self, org: &str, function: &str, code: &str) {
        self.requests
            .with_label_values(&self.labels(org, &[function, code])[..])
            .inc();
    }

    pub fn request_duration(&self, org: &str, function: &str, seconds: f64) {
        self.request_duration
            .with_label_values(&self.labels(org, &[function])[..])
            .observe(seconds);
    }

    pub fn lambda_error(&self, org: &str, function: &str, kind: &str) {
        self.lambda_errors
            .with_label_values(&self.labels(org, &[function, kind])[..])
            .inc();
    }

    /// Counts a request of `org` in flight until the guard is dropped, however the request ends
    /// (including a client that disconnects and so cancels it).
    pub fn inflight(&self, org: &str) -> InflightGuard {
        let gauge = self.inflight.with_label_values(&self.labels(org, &[])[..]);
        gauge.inc();
        InflightGuard(gauge)
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A metric's label values, kept on the stack: the org and up to three more.
struct Labels<'a> {
    values: [&'a str; 4],
    start: usize,
    end: usize,
}

impl<'a> std::ops::Deref for Labels<'a> {
    type Target = [&'a str];

    fn deref(&self) -> &[&'a str] {
        &self.values[self.start..self.end]
    }
}

pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_org_label_can_be_switched_off() {
        let with = Metrics::new(&Registry::new(), true).unwrap();
        with.request("org-a", "f", "ok");
        assert!(
            with.render()
                .contains(r#"glg_requests_total{code="ok",function="f",org="org-a"} 1"#)
        );
        let without = Metrics::new(&Registry::new(), false).unwrap();
        without.request("org-a", "f", "ok");
        without.request("org-b", "f", "ok");
        let text = without.render();
        assert!(
            text.contains(r#"glg_requests_total{code="ok",function="f"} 2"#),
            "{text}"
        );
        assert!(!text.contains("org-a"));
    }

    /// Every series the Grafana dashboard queries is one the gateway exports.
    #[test]
    fn the_dashboard_queries_only_exported_metrics() {
        let m = Metrics::new(&Registry::new(), true).unwrap();
        m.request("o", "f", "ok");
        m.request_duration("o", "f", 0.1);
        m.lambda_error("o", "f", "aws");
        m.lambda_invoke_duration
            .with_label_values(&["eu-west-1"])
            .observe(0.1);
        m.sts_assume_role.with_label_values(&["ok"]).inc();
        m.credentials_cache.with_label_values(&["hit"]).inc();
        m.config_reload.with_label_values(&["ok"]).inc();
        let _inflight = m.inflight("o");
        let exported: std::collections::HashSet<String> = m
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect();
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../deploy/grafana/genesys-lambda-gateway.json"
        ))
        .unwrap();
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("glg_").map(|_| word) {
                        let family = ["_bucket", "_sum", "_count"]
                            .iter()
                            .find_map(|suffix| name.strip_suffix(suffix))
                            .unwrap_or(name);
                        assert!(
                            exported.contains(family),
                            "{family} (in {expr:?}) is not exported"
                        );
                        queried += 1;
                    }
                }
            }
        }
        assert!(queried >= 10, "the dashboard queries {queried} series");
    }

    #[test]
    fn inflight_guards_count_down_when_dropped() {
        let m = Metrics::new(&Registry::new(), true).unwrap();
        let a = m.inflight("org-a");
        let b = m.inflight("org-a");
        assert!(
            m.render()
                .contains(r#"glg_inflight_requests{org="org-a"} 2"#)
        );
        drop((a, b));
        assert!(
            m.render()
                .contains(r#"glg_inflight_requests{org="org-a"} 0"#)
        );
    }
}
