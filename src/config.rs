//! The TOML configuration: typed structs with defaults, then `validate()`, which reports every
//! problem at once (key and org named) instead of stopping at the first.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::arn::{FunctionArn, RoleArn};

/// Lambda's synchronous invoke payload limit (6 MiB); a larger body could never be delivered.
pub const LAMBDA_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// Genesys data-action timeouts range over 1–60 s; so do ours.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a keep-alive connection may sit idle between requests.
pub const MAX_KEEPALIVE: Duration = Duration::from_secs(3600);
/// STS `DurationSeconds` bounds.
pub const MIN_SESSION: Duration = Duration::from_secs(900);
pub const MAX_SESSION: Duration = Duration::from_secs(43_200);

/// The demo configuration, embedded so `serve --demo` runs without any file.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub orgs: Vec<OrgConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener for data-action calls.
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/live`, `/ready`. Never the public one.
    pub admin_listen: SocketAddr,
    pub max_body_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub default_timeout: Duration,
    /// How long in-flight requests may run on after SIGTERM/SIGINT.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// A client must send its request headers within this time (slow-loris guard).
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Requests in flight across all orgs; beyond it requests are refused with 503.
    pub max_inflight: usize,
    /// Open client connections at most; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A keep-alive connection with no request in flight is closed after this long.
    #[serde(deserialize_with = "duration")]
    pub keepalive_timeout: Duration,
    /// TLS on the public listener; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
}

/// Certificate chain and private key, PEM files, re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 9090).into(),
            max_body_bytes: LAMBDA_MAX_PAYLOAD,
            default_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_inflight: 4096,
            max_connections: 10_000,
            keepalive_timeout: Duration::from_secs(75),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Region of the gateway's own STS calls; `None` defers to the AWS default chain.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// `DurationSeconds` asked of STS.
    #[serde(deserialize_with = "duration")]
    pub session_duration: Duration,
    /// Refresh a key in use this long before its credentials expire.
    #[serde(deserialize_with = "duration")]
    pub refresh_before_expiry: Duration,
    /// Up to this much later, at random, so keys loaded together refresh spread out.
    #[serde(deserialize_with = "duration")]
    pub refresh_jitter: Duration,
    /// A key no request has used for this long is no longer refreshed; its credentials go.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Load every org's credentials in the background at start-up.
    pub prefetch: bool,
    /// AssumeRole calls at once while prefetching.
    pub prefetch_concurrency: usize,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            session_duration: Duration::from_secs(3600),
            refresh_before_expiry: Duration::from_secs(300),
            refresh_jitter: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(3600),
            prefetch: false,
            prefetch_concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label per-request series with the org; turn off with very many orgs (cardinality).
    pub org_label: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { org_label: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfig {
    /// The Genesys Cloud org ID; also the Basic-auth user name.
    pub id: String,
    pub role_arn: String,
    /// `sts:ExternalId` sent on AssumeRole; the org ID when absent.
    #[serde(default)]
    pub external_id: Option<String>,
    /// SHA-256 hex of the caller's secret; a list allows rotation without downtime.
    #[serde(default)]
    pub token_sha256: TokenHashes,
    /// Or a file of such hashes, one per line (e.g. a mounted Kubernetes Secret), read at
    /// start and on every reload.
    #[serde(default)]
    pub token_sha256_file: Option<std::path::PathBuf>,
    /// Requests of this org in flight at once; beyond it 429 `org_concurrency_limit`.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    #[serde(default)]
    pub functions: Functions,
}

/// An org's allow-listed functions, in name order. A sorted slice rather than a map: it is only
/// read once parsed, and a `BTreeMap`'s node (room for 11 entries) took ~1 KB per org, 10 MB
/// of a 10,000-org gateway's memory (measured).
#[derive(Debug, Clone, Default)]
pub struct Functions(Box<[(String, FunctionConfig)]>);

impl Functions {
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &FunctionConfig)> {
        self.0
            .iter()
            .map(|(name, function)| (name.as_str(), function))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Functions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // TOML refuses a key given twice, so the map loses nothing; it is dropped at once.
        let by_name = BTreeMap::<String, FunctionConfig>::deserialize(deserializer)?;
        Ok(Self(by_name.into_iter().collect()))
    }
}

impl OrgConfig {
    pub fn external_id(&self) -> &str {
        self.external_id.as_deref().unwrap_or(&self.id)
    }
}

/// One hash or several (`token_sha256 = "…"` or `token_sha256 = ["…", "…"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenHashes {
    One(String),
    Many(Vec<String>),
}

impl Default for TokenHashes {
    fn default() -> Self {
        TokenHashes::Many(Vec::new())
    }
}

impl TokenHashes {
    pub fn as_slice(&self) -> &[String] {
        match self {
            TokenHashes::One(one) => std::slice::from_ref(one),
            TokenHashes::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// Function ARN, optionally ending in `:qualifier`.
    pub arn: String,
    /// Version or alias; alternative to a qualified ARN, not in addition to one.
    #[serde(default)]
    pub qualifier: Option<String>,
    /// Hard deadline for the whole request; `server.default_timeout` when absent.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// `RequestResponse` (answer with the function's result) or `Event` (202 at once).
    #[serde(default)]
    pub invocation_type: InvocationType,
    /// Put the last 4 KB of the function's log in the gateway's debug log (never the response).
    #[serde(default)]
    pub log_tail: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum InvocationType {
    #[default]
    RequestResponse,
    Event,
}

/// Every problem `validate` found, each naming its key (and org).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (it quotes the offending line); keep it whole.
            ConfigErrors(vec![e.to_string().trim_end().to_owned()])
        })?;
        // Kept for the gateway's life: not the spare room of a vector grown by doubling.
        config.orgs.shrink_to_fit();
        config.validate()
    }

    /// Checks everything serde cannot: ranges, ARNs, uniqueness. Collects every problem.
    pub fn validate(mut self) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        for (i, org) in self.orgs.iter_mut().enumerate() {
            let at = format!("orgs[{i}] (id {:?})", org.id);
            read_token_file(&mut problems, &at, org);
        }
        let s = &self.server;
        if s.max_body_bytes == 0 || s.max_body_bytes > LAMBDA_MAX_PAYLOAD {
            problems.push(format!(
                "server.max_body_bytes: {} is outside 1..={LAMBDA_MAX_PAYLOAD} (Lambda's synchronous payload limit)",
                s.max_body_bytes
            ));
        }
        check_timeout(&mut problems, "server.default_timeout", s.default_timeout);
        if s.listen == s.admin_listen && s.listen.port() != 0 {
            problems.push(format!(
                "server.admin_listen: {} is the public listener's address; the admin endpoints must not be public",
                s.admin_listen
            ));
        }
        if s.header_read_timeout.is_zero() || s.header_read_timeout > MAX_TIMEOUT {
            problems.push(format!(
                "server.header_read_timeout: {} is outside (0s, 60s]",
                humantime::format_duration(s.header_read_timeout)
            ));
        }
        if s.max_inflight == 0 {
            problems.push("server.max_inflight: must be at least 1".into());
        }
        if !(1..=1_000_000).contains(&s.max_connections) {
            problems.push(format!(
                "server.max_connections: {} is outside 1..=1000000",
                s.max_connections
            ));
        }
        if s.keepalive_timeout < Duration::from_secs(1) || s.keepalive_timeout > MAX_KEEPALIVE {
            problems.push(format!(
                "server.keepalive_timeout: {} is outside 1s..=1h",
                humantime::format_duration(s.keepalive_timeout)
            ));
        }
        if let Some(tls) = &s.tls
            && let Err(e) = crate::tls::load(tls)
        {
            problems.push(format!("server.tls: {e}"));
        }
        if let Some(region) = &self.aws.region
            && !is_region(region)
        {
            problems.push(format!("aws.region: {region:?} is not a region name"));
        }
        let c = &self.credentials;
        if c.session_duration < MIN_SESSION || c.session_duration > MAX_SESSION {
            problems.push(format!(
                "credentials.session_duration: {} is outside 15m..=12h (STS DurationSeconds)",
                humantime::format_duration(c.session_duration)
            ));
        }
        // Credentials are not handed out in their last 30 s; a refresh must start a minute
        // before that at the latest, jitter included.
        if c.refresh_before_expiry < Duration::from_secs(120)
            || c.refresh_before_expiry >= c.session_duration
        {
            problems.push(format!(
                "credentials.refresh_before_expiry: {} must be at least 2m and below credentials.session_duration",
                humantime::format_duration(c.refresh_before_expiry)
            ));
        }
        if c.refresh_jitter > c.refresh_before_expiry / 2 {
            problems.push(format!(
                "credentials.refresh_jitter: {} must be at most half of credentials.refresh_before_expiry",
                humantime::format_duration(c.refresh_jitter)
            ));
        }
        if c.idle_timeout < Duration::from_secs(60) {
            problems.push(format!(
                "credentials.idle_timeout: {} must be at least 1m",
                humantime::format_duration(c.idle_timeout)
            ));
        }
        if !(1..=256).contains(&c.prefetch_concurrency) {
            problems.push(format!(
                "credentials.prefetch_concurrency: {} is outside 1..=256",
                c.prefetch_concurrency
            ));
        }
        if self.orgs.is_empty() {
            problems.push("orgs: no org is configured; add at least one [[orgs]] table".into());
        }
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, org) in self.orgs.iter().enumerate() {
            let at = format!("orgs[{i}] (id {:?})", org.id);
            if !is_org_id(&org.id) {
                problems.push(format!(
                    "{at}.id: must be 2-64 characters of letters, digits, '.', '_' or '-'"
                ));
            }
            if !ids.insert(org.id.to_ascii_lowercase()) {
                problems.push(format!("{at}.id: duplicate org ID"));
            }
            if let Err(e) = org.role_arn.parse::<RoleArn>() {
                problems.push(format!("{at}.role_arn: {e}"));
            }
            if !is_external_id(org.external_id()) {
                problems.push(format!(
                    "{at}.external_id: must be 2-1224 characters of letters, digits or _+=,.@:/-"
                ));
            }
            let tokens = org.token_sha256.as_slice();
            if tokens.is_empty() {
                problems.push(format!(
                    "{at}.token_sha256: at least one hash is required (or token_sha256_file)"
                ));
            }
            for token in tokens {
                if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(format!(
                        "{at}.token_sha256: {:?} is not 64 hex digits (use `genesys-lambda-gateway hash-secret`)",
                        abbreviate(token)
                    ));
                } else if !hashes.insert(token.to_ascii_lowercase()) {
                    // A bearer secret alone must name exactly one org.
                    problems.push(format!(
                        "{at}.token_sha256: the same secret hash is configured more than once"
                    ));
                }
            }
            if org.max_concurrency == Some(0) {
                problems.push(format!("{at}.max_concurrency: must be at least 1"));
            }
            if org.functions.is_empty() {
                problems.push(format!("{at}.functions: no function is allow-listed"));
            }
            for (name, function) in org.functions.iter() {
                let at = format!("{at}.functions.{name}");
                if !is_function_name(name) {
                    problems.push(format!(
                        "{at}: the name must be 1-128 characters of letters, digits, '.', '_' or '-', and not '.' or '..'"
                    ));
                }
                match function.arn.parse::<FunctionArn>() {
                    Ok(arn) => {
                        if arn.qualifier.is_some() && function.qualifier.is_some() {
                            problems.push(format!(
                                "{at}.qualifier: the ARN already ends in a qualifier; give one or the other"
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("{at}.arn: {e}")),
                }
                if let Some(q) = &function.qualifier
                    && !crate::arn::is_qualifier(q)
                {
                    problems.push(format!(
                        "{at}.qualifier: {q:?} is not a version or alias name"
                    ));
                }
                if function.log_tail && function.invocation_type == InvocationType::Event {
                    problems.push(format!(
                        "{at}.log_tail: Lambda returns no log for Event invocations; remove it or use RequestResponse"
                    ));
                }
                if let Some(timeout) = function.timeout {
                    check_timeout(&mut problems, &format!("{at}.timeout"), timeout);
                }
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigErrors(problems))
        }
    }
}

/// Fills `token_sha256` from `token_sha256_file`: one hash per line, blank lines and `#`
/// comments skipped.
fn read_token_file(problems: &mut Vec<String>, at: &str, org: &mut OrgConfig) {
    let Some(path) = &org.token_sha256_file else {
        return;
    };
    if !org.token_sha256.as_slice().is_empty() {
        problems.push(format!(
            "{at}.token_sha256_file: give token_sha256 or token_sha256_file, not both"
        ));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            org.token_sha256 = TokenHashes::Many(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
            );
        }
        Err(e) => problems.push(format!("{at}.token_sha256_file: {}: {e}", path.display())),
    }
}

fn check_timeout(problems: &mut Vec<String>, key: &str, timeout: Duration) {
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        problems.push(format!(
            "{key}: {} is outside 1s..=60s (Genesys data-action timeouts)",
            humantime::format_duration(timeout)
        ));
    }
}

fn abbreviate(s: &str) -> String {
    s.chars().take(16).collect()
}

fn is_org_id(id: &str) -> bool {
    (2..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-'
                )
        })
}

/// Names that are safe as one URL path segment.
pub fn is_function_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"10s\", \"5m\" or \"1h\": {e}"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    fn minimal(org_extra: &str, function: &str) -> String {
        format!(
            r#"
[[orgs]]
id = "91cf9239-f549-465b-8cad-9b46f1420818"
role_arn = "arn:aws:iam::111122223333:role/genesys-data-actions"
token_sha256 = "{HASH}"
{org_extra}
[orgs.functions]
{function}
"#
        )
    }

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text).expect_err("config should be refused").0
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let text = minimal(
            "",
            r#"lookup = { arn = "arn:aws:lambda:eu-west-1:111122223333:function:lookup:live" }"#,
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.server.default_timeout, Duration::from_secs(30));
        assert_eq!(config.server.max_body_bytes, LAMBDA_MAX_PAYLOAD);
        assert_eq!(
            config.credentials.session_duration,
            Duration::from_secs(3600)
        );
        assert_eq!(
            config.orgs[0].external_id(),
            "91cf9239-f549-465b-8cad-9b46f1420818"
        );
    }

    #[test]
    fn embedded_demo_and_example_configs_are_valid() {
        Config::parse(DEMO_CONFIG).unwrap();
        Config::parse(include_str!("../config/example.toml")).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("[server]\nlisten_port = 1\n{}", minimal("", ""));
        let p = problems(&text);
        assert!(p[0].contains("unknown field `listen_port`"), "{p:?}");
    }

    #[test]
    fn bad_durations_are_refused_with_the_value() {
        let text = format!("[server]\ndefault_timeout = \"soon\"\n{}", minimal("", ""));
        let p = problems(&text);
        assert!(p[0].contains("\"soon\" is not a duration"), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_org() {
        let text = format!(
            r#"
[server]
default_timeout = "90s"
[credentials]
session_duration = "5m"
{}
[[orgs]]
id = "91cf9239-f549-465b-8cad-9b46f1420818"
role_arn = "arn:aws:iam::111122223333:user/not-a-role"
token_sha256 = "abc"
[orgs.functions]
x = {{ arn = "arn:aws:lambda:eu-west-1:111122223333:function:x", timeout = "0s" }}
"#,
            minimal(
                "",
                r#"bad = { arn = "arn:aws:lambda:nowhere:111122223333:function:bad" }
q = { arn = "arn:aws:lambda:eu-west-1:111122223333:function:q:live", qualifier = "v2" }"#
            )
        );
        let p = problems(&text);
        let has = |needle: &str| p.iter().any(|m| m.contains(needle));
        assert!(
            has("server.default_timeout: 1m 30s is outside 1s..=60s"),
            "{p:?}"
        );
        assert!(has("credentials.session_duration"), "{p:?}");
        assert!(has("credentials.refresh_before_expiry"), "{p:?}");
        assert!(
            has("orgs[0] (id \"91cf9239-f549-465b-8cad-9b46f1420818\").functions.bad.arn"),
            "{p:?}"
        );
        assert!(
            has("functions.q.qualifier: the ARN already ends in a qualifier"),
            "{p:?}"
        );
        assert!(
            has("orgs[1] (id \"91cf9239-f549-465b-8cad-9b46f1420818\").id: duplicate org ID"),
            "{p:?}"
        );
        assert!(has("orgs[1]") && has(".role_arn:"), "{p:?}");
        assert!(has("token_sha256: \"abc\" is not 64 hex digits"), "{p:?}");
        assert!(has("functions.x.timeout: 0s is outside"), "{p:?}");
        assert_eq!(p.len(), 9, "{p:?}");
    }

    #[test]
    fn a_secret_hash_may_name_only_one_org() {
        let text = format!(
            "{}\n[[orgs]]\nid = \"other-org\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\ntoken_sha256 = [\"{HASH}\"]\n[orgs.functions]\nf = {{ arn = \"arn:aws:lambda:us-east-1:111122223333:function:f\" }}\n",
            minimal(
                "",
                r#"f = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f" }"#
            )
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("same secret hash"), "{p:?}");
    }

    #[test]
    fn external_id_and_function_names_are_checked() {
        let text = minimal(
            "external_id = \"has space\"",
            r#""../etc" = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f" }"#,
        );
        let p = problems(&text);
        assert!(p.iter().any(|m| m.contains(".external_id:")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("functions.../etc: the name")),
            "{p:?}"
        );
    }

    #[test]
    fn invocation_types() {
        let text = minimal(
            "",
            r#"rr = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f", log_tail = true }
ev = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f", invocation_type = "Event" }"#,
        );
        let config = Config::parse(&text).unwrap();
        let functions = &config.orgs[0].functions;
        let get = |name| functions.iter().find(|(n, _)| *n == name).map(|(_, f)| f);
        assert_eq!(get("ev").unwrap().invocation_type, InvocationType::Event);
        assert_eq!(
            get("rr").unwrap().invocation_type,
            InvocationType::RequestResponse
        );
        assert!(get("e").is_none() && get("zz").is_none());
        let names: Vec<&str> = functions.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["ev", "rr"], "in name order");
        let bad = minimal(
            "",
            r#"ev = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f", invocation_type = "Event", log_tail = true }
dr = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f", invocation_type = "DryRun" }"#,
        );
        let p = problems(&bad);
        assert!(p[0].contains("unknown variant `DryRun`"), "{p:?}");
        let bad = minimal(
            "",
            r#"ev = { arn = "arn:aws:lambda:us-east-1:111122223333:function:f", invocation_type = "Event", log_tail = true }"#,
        );
        assert!(problems(&bad)[0].contains("functions.ev.log_tail"));
    }

    #[test]
    fn region_names() {
        assert!(is_region("eu-west-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("nowhere"));
        assert!(!is_region("EU-WEST-1"));
        assert!(!is_region("eu-west-x"));
    }

    #[test]
    fn token_hashes_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("glg-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("org");
        let other = "a".repeat(64);
        std::fs::write(&file, format!("# rotated 2026-11\n{HASH}\n\n  {other}  \n")).unwrap();
        let function = r#"f = { arn = "arn:aws:lambda:eu-west-1:111122223333:function:f" }"#;
        let with_file = |extra: &str| {
            minimal(extra, function).replace(&format!("token_sha256 = \"{HASH}\"\n"), "")
        };
        let text = with_file(&format!("token_sha256_file = \"{}\"", file.display()));
        let config = Config::parse(&text).unwrap();
        assert_eq!(
            config.orgs[0].token_sha256.as_slice(),
            [HASH.to_owned(), other]
        );

        let missing = with_file(&format!(
            "token_sha256_file = \"{}\"",
            dir.join("nope").display()
        ));
        let p = problems(&missing);
        assert!(
            p.iter()
                .any(|m| m.contains(".token_sha256_file: ") && m.contains("nope")),
            "{p:?}"
        );

        let both = minimal(
            &format!("token_sha256_file = \"{}\"", file.display()),
            function,
        );
        let p = problems(&both);
        assert!(p.iter().any(|m| m.contains("not both")), "{p:?}");

        let neither = with_file("");
        let p = problems(&neither);
        assert!(
            p.iter()
                .any(|m| m.contains("at least one hash is required")),
            "{p:?}"
        );
    }
}
