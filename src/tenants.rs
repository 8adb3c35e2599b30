//! The orgs the gateway serves, as the request path needs them: each org's allow-listed
//! functions and its credential slot, built once per configuration.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::arn::FunctionArn;
use crate::config::{Config, InvocationType};
use crate::credentials::{CredentialCache, Slot};
use crate::sigv4;

pub struct Org {
    pub id: String,
    pub role_arn: String,
    /// In name order (the config's). A slice rather than a map: a map's spare buckets, each
    /// the size of a `Function`, took ~2 KB per org (measured with 10,000 orgs).
    pub functions: Box<[Function]>,
    pub credentials: Arc<Slot>,
    /// `max_concurrency`: permits for this org's requests in flight.
    pub limit: Option<Arc<Semaphore>>,
}

impl Org {
    /// The allow-listed function callers name `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        let at = self
            .functions
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()?;
        Some(&self.functions[at])
    }
}

pub struct Function {
    /// The name callers use in the URL (and the metrics label).
    pub name: String,
    pub arn: FunctionArn,
    pub unqualified_arn: String,
    pub qualifier: Option<String>,
    pub timeout: Duration,
    pub invocation_type: InvocationType,
    pub log_tail: bool,
    /// The Invoke request path, percent-encoded: `/2015-03-31/functions/<ARN>/invocations`.
    pub invoke_path: String,
    /// The Invoke query string: `Qualifier=<qualifier>`, or empty.
    pub invoke_query: String,
    /// Where the Invoke requests go, worked out by the invoker on first use.
    pub target: OnceLock<crate::invoke::Target>,
}

/// Builds the orgs of a validated config, in config order (the order `auth` indexes them by).
pub fn build(config: &Config, cache: &CredentialCache) -> Vec<Org> {
    config
        .orgs
        .iter()
        .map(|org| {
            let functions = org
                .functions
                .iter()
                .map(|(name, f)| {
                    let arn: FunctionArn = f.arn.parse().expect("validated config");
                    let qualifier = f.qualifier.clone().or_else(|| arn.qualifier.clone());
                    let mut invoke_path = String::from("/2015-03-31/functions/");
                    sigv4::uri_encode(&mut invoke_path, &arn.unqualified(), false);
                    invoke_path.push_str("/invocations");
                    let mut invoke_query = String::new();
                    if let Some(q) = &qualifier {
                        invoke_query.push_str("Qualifier=");
                        sigv4::uri_encode(&mut invoke_query, q, false);
                    }
                    Function {
                        name: name.to_owned(),
                        unqualified_arn: arn.unqualified(),
                        qualifier,
                        arn,
                        timeout: f.timeout.unwrap_or(config.server.default_timeout),
                        invocation_type: f.invocation_type,
                        log_tail: f.log_tail,
                        invoke_path,
                        invoke_query,
                        target: OnceLock::new(),
                    }
                })
                .collect();
            Org {
                id: org.id.clone(),
                role_arn: org.role_arn.clone(),
                functions,
                credentials: cache.slot(&org.role_arn, org.external_id(), &session_name(&org.id)),
                limit: org.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            }
        })
        .collect()
}

/// The role session name, `glg-<org ID>`: CloudTrail in the org's account then shows which org
/// the gateway acted for. Org IDs are validated to characters STS accepts; 64 is STS's limit.
pub fn session_name(org_id: &str) -> String {
    let mut name = format!("glg-{org_id}");
    name.truncate(64);
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn functions_are_found_by_name() {
        let names = ["zeta", "alpha", "mid.v2", "Mid", "alpha-2"];
        let mut text = String::from(
            "[[orgs]]\nid = \"org-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\n\
             token_sha256 = \"0159438a9235d6abde38e49fb98944660d067d6b9b03d8a8f4ee4e522feb62cb\"\n\
             [orgs.functions]\n",
        );
        for (i, name) in names.iter().enumerate() {
            text.push_str(&format!(
                "\"{name}\" = {{ arn = \"arn:aws:lambda:us-east-1:111122223333:function:f{i}\" }}\n"
            ));
        }
        let config = Config::parse(&text).unwrap();
        let metrics = crate::metrics::Metrics::new(&prometheus::Registry::new(), false).unwrap();
        // Building orgs asks STS for nothing: the gateway's own client, never called.
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let cache = CredentialCache::new(
            crate::server::sts(&sdk),
            (&config.credentials).into(),
            Arc::new(metrics),
        );
        let orgs = build(&config, &cache);
        for (i, name) in names.iter().enumerate() {
            let function = orgs[0].function(name).expect(name);
            assert_eq!(function.name, *name);
            assert_eq!(function.arn.name, format!("f{i}"));
        }
        for absent in ["", "a", "alpha-", "mid", "zz", "ZETA"] {
            assert!(orgs[0].function(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn session_names_carry_the_org_and_fit_sts() {
        assert_eq!(
            session_name("91cf9239-f549-465b-8cad-9b46f1420818"),
            "glg-91cf9239-f549-465b-8cad-9b46f1420818"
        );
        assert_eq!(session_name(&"a".repeat(64)).len(), 64);
    }
}
