//! genesys-lambda-gateway: Genesys Cloud data actions in, each org's AWS Lambda functions out,
//! through that org's cross-account role assumed with ExternalId = org ID.
//!
//! A request crosses the modules in this order:
//! - [`ingress`]: the public HTTP endpoint `POST /v1/functions/{name}/invoke`;
//! - [`auth`]: Basic/Bearer credentials → exactly one org, behind the [`guard`] against
//!   brute force;
//! - [`tenants`]: the org's allow-listed functions and credential slot;
//! - [`credentials`]: AssumeRole (ExternalId) and the per-role credential cache;
//! - [`invoke`]: the Lambda call in the function's region, with the Genesys ClientContext,
//!   signed by [`sigv4`] with the session's cached key;
//! - [`error`]: every failure mapped to a status and a stable error code.
//!
//! Around it: [`config`] (TOML, validated) and [`arn`], [`server`] (assembly, listeners, drain),
//! [`tls`] (optional rustls on the public listener), [`json`] (body checks),
//! [`admin`] (`/metrics`, `/live`, `/ready`, `/admin/check`), [`onboarding`] (proving an org's
//! wiring), [`metrics`], [`telemetry`], [`clock`] (timestamps without a formatter),
//! [`shutdown`], [`cli`], [`runtime`] (the tokio runtime for the CPUs at hand).
#![forbid(unsafe_code)]

pub mod admin;
pub mod arn;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod guard;
pub mod ingress;
pub mod invoke;
pub mod json;
pub mod metrics;
pub mod onboarding;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod sigv4;
pub mod telemetry;
pub mod tenants;
pub mod tls;
pub mod upstream;
