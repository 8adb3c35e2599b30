//! The command line: `serve`, `check-config`, `hash-secret`, `gen-secret`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand, ValueEnum};
use rand::RngCore;

use crate::auth::hash_secret;
use crate::config::{Config, ConfigErrors, DEMO_CONFIG};
use crate::credentials::CredentialCache;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::{onboarding, server, tenants};

/// Exit code for a configuration that cannot be used (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code of `check-config --assume` when the config is valid but an org's AWS wiring is
/// broken (sysexits EX_CONFIG).
pub const EXIT_BROKEN_ORG: u8 = 78;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Invoke AWS Lambda functions from Genesys Cloud data actions, per org"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        source: ConfigSource,
        /// Log format: JSON lines, human-readable text, or text on a terminal and JSON elsewhere.
        #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
        log_format: LogFormat,
    },
    /// Validate a config and print a summary per org; exit 0 when valid, 64 when not.
    /// With --assume, also prove each org's AWS wiring; exit 78 when any org is broken.
    CheckConfig {
        #[command(flatten)]
        source: ConfigSource,
        /// Assume each org's role with its ExternalId (the gateway's real AWS credentials) and
        /// DryRun-invoke each of its functions in the function's region.
        #[arg(long)]
        assume: bool,
        /// With --assume: check only this org.
        #[arg(long, requires = "assume")]
        org: Option<String>,
        /// With --assume: print the report as JSON.
        #[arg(long, requires = "assume")]
        json: bool,
    },
    /// Read a secret on stdin and print its `token_sha256` value.
    HashSecret,
    /// Print a fresh random secret and its `token_sha256` value.
    GenSecret,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ConfigSource {
    /// Path of the TOML config.
    #[arg(long, env = "GLG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Use the embedded demo config (local emulator only; see README).
    #[arg(long)]
    pub demo: bool,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match &self.config {
            Some(path) => Config::load(path),
            None => Config::parse(DEMO_CONFIG),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// `check-config`: every problem on stderr, or a summary per org on stdout.
pub fn check_config(source: &ConfigSource) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!(
        "config OK: {} org(s); listen {}, admin {}",
        config.orgs.len(),
        config.server.listen,
        config.server.admin_listen
    );
    for org in &config.orgs {
        println!("org {}", org.id);
        println!("  role_arn     {}", org.role_arn);
        println!("  external_id  {}", org.external_id());
        println!("  secrets      {}", org.token_sha256.as_slice().len());
        for (name, function) in org.functions.iter() {
            let timeout = function.timeout.unwrap_or(config.server.default_timeout);
            let qualifier = function
                .qualifier
                .as_deref()
                .map(|q| format!(" (qualifier {q})"))
                .unwrap_or_default();
            println!(
                "  function     {name} -> {}{qualifier}, timeout {}",
                function.arn,
                humantime::format_duration(timeout)
            );
        }
    }
    ExitCode::SUCCESS
}

/// `hash-secret`: the secret is stdin less one trailing newline.
pub fn hash_secret_from_stdin() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("could not read the secret from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let secret = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(&input);
    if secret.is_empty() {
        eprintln!("the secret on stdin is empty");
        return ExitCode::FAILURE;
    }
    println!("{}", hex::encode(hash_secret(secret)));
    ExitCode::SUCCESS
}

/// `gen-secret`: 256 random bits, URL-safe base64 (no ':' so it fits Basic auth).
pub fn gen_secret() -> ExitCode {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    println!("secret:       {secret}");
    println!(
        "token_sha256: {}",
        hex::encode(hash_secret(secret.as_bytes()))
    );
    ExitCode::SUCCESS
}

/// `check-config --assume`: proves every org's (or one org's) wiring against AWS.
pub async fn check_assume(source: &ConfigSource, only: Option<&str>, json: bool) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(id) = only
        && !config.orgs.iter().any(|o| o.id.eq_ignore_ascii_case(id))
    {
        eprintln!("--org {id}: no such org in the config");
        return ExitCode::from(EXIT_CONFIG);
    }
    let sdk = match server::aws_base_config(&config).await {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let metrics = match Metrics::new(&prometheus::Registry::new(), true) {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let assumer = server::sts(&sdk);
    let cache = CredentialCache::new(
        assumer.clone(),
        (&config.credentials).into(),
        metrics.clone(),
    );
    let invoker = match Invoker::new(sdk, metrics) {
        Ok(invoker) => invoker,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reports = Vec::new();
    for org in tenants::build(&config, &cache) {
        if only.is_none_or(|id| org.id.eq_ignore_ascii_case(id)) {
            reports.push(onboarding::check_org(&*assumer, &invoker, &org).await);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
        print!("{}", onboarding::render_table(&reports));
    }
    if reports.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BROKEN_ORG)
    }
}
