//! Config text: parsing and validation never panic, and whatever validates is usable: every
//! org's hashes parse and every function ARN names a region.
#![no_main]

use genesys_lambda_gateway::arn::FunctionArn;
use genesys_lambda_gateway::auth;
use genesys_lambda_gateway::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(config) = Config::parse(text) else {
        return;
    };
    assert!(!config.orgs.is_empty());
    for org in &config.orgs {
        for hash in org.token_sha256.as_slice() {
            assert!(auth::parse_hash(hash).is_some(), "{hash:?} validated");
        }
        for (_, function) in org.functions.iter() {
            let arn: FunctionArn = function.arn.parse().expect("validated ARN");
            assert!(!arn.region.is_empty());
        }
    }
});
