//! The Authorization header: any bytes, any number of values. Never panics, and a success
//! names the org whose secret was really presented (two orgs, one ID a prefix of the other).
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::Engine;
use genesys_lambda_gateway::auth::{self, Authenticator};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

const ORGS: [(&str, &str); 2] = [("acme", "acme-secret"), ("acme-corp", "corp-secret")];

static AUTH: LazyLock<Authenticator> = LazyLock::new(|| {
    Authenticator::new(
        ORGS.iter()
            .map(|(id, secret)| (*id, vec![auth::hash_secret(secret.as_bytes())])),
    )
});

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    /// Scheme as given, then base64 of `user:secret` bytes.
    Basic(String, Vec<u8>),
    /// One of the real secrets under a user of choice, to reach the success paths.
    Known {
        scheme: bool,
        user: String,
        org: bool,
    },
}

fuzz_target!(|values: Vec<Value>| {
    let mut headers = HeaderMap::new();
    for value in &values {
        let bytes = match value {
            Value::Raw(bytes) => bytes.clone(),
            Value::Basic(scheme, creds) => {
                let mut v = scheme.clone().into_bytes();
                v.push(b' ');
                v.extend(
                    base64::engine::general_purpose::STANDARD
                        .encode(creds)
                        .bytes(),
                );
                v
            }
            Value::Known { scheme, user, org } => {
                let secret = ORGS[usize::from(*org)].1;
                if *scheme {
                    format!("Bearer {secret}").into_bytes()
                } else {
                    let creds = format!("{user}:{secret}");
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(creds)
                    )
                    .into_bytes()
                }
            }
        };
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            headers.append(AUTHORIZATION, value);
        }
    }
    let Ok(index) = AUTH.authenticate(&headers) else {
        return;
    };
    // Exactly one value, carrying this org's secret: as Bearer, or Basic with this org's ID.
    assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
    let value = headers.get(AUTHORIZATION).unwrap().as_bytes();
    let (id, secret) = ORGS[index];
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ').unwrap());
    let token = token.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        assert_eq!(token, secret.as_bytes());
    } else {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap();
        let expected = format!("{id}:{secret}");
        assert!(
            decoded.eq_ignore_ascii_case(expected.as_bytes())
                && decoded.ends_with(secret.as_bytes())
        );
    }
});
