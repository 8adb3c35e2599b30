//! Caller authentication: `Authorization: Basic base64(org:secret)` or `Bearer secret`, checked
//! against SHA-256 hashes from the config in constant time. Yields the index of exactly one org.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a secret: the form in which secrets are configured (`token_sha256`).
pub type SecretHash = [u8; 32];

/// Why a caller was refused. Every variant answers 401; the variants exist for logs and metrics,
/// never for the response (which must not tell a prober which part was wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("more than one Authorization header")]
    Duplicate,
    #[error("the Authorization header is not Basic or Bearer credentials")]
    Malformed,
    #[error("unknown org or wrong secret")]
    Rejected,
}

pub fn hash_secret(secret: &[u8]) -> SecretHash {
    Sha256::digest(secret).into()
}

/// Parses a configured `token_sha256` value (validated by `config` beforehand).
pub fn parse_hash(hex_digits: &str) -> Option<SecretHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

/// The credential a request presented, before it is checked.
enum Presented<'a> {
    /// The decoded `org:secret`, the org lower-cased (org IDs match in any case).
    Basic {
        decoded: Vec<u8>,
        colon: usize,
    },
    Bearer(&'a [u8]),
}

/// Splits the Authorization value into scheme and credentials. The scheme is case-insensitive
/// (RFC 9110 §11.1); the credentials are taken byte for byte.
fn presented(value: &[u8]) -> Result<Presented<'_>, AuthError> {
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(AuthError::Malformed)?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let mut decoded = STANDARD.decode(token).map_err(|_| AuthError::Malformed)?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(AuthError::Malformed)?;
        // The secret may be any bytes; the org ID must be text.
        let (org, secret) = decoded.split_at_mut(colon);
        if org.is_empty() || secret.len() < 2 || std::str::from_utf8(org).is_err() {
            return Err(AuthError::Malformed);
        }
        org.make_ascii_lowercase();
        Ok(Presented::Basic { decoded, colon })
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        Ok(Presented::Bearer(token))
    } else {
        Err(AuthError::Malformed)
    }
}

/// Maps presented credentials to one org. Built once per config.
pub struct Authenticator {
    /// Lower-cased org ID, as bytes (a presented one is checked as text once, in `presented`)
    /// → (org index, its secret hashes).
    by_org: HashMap<Box<[u8]>, (usize, Vec<SecretHash>)>,
    /// Secret hash → org index, for Bearer secrets (config guarantees each hash names one org).
    by_hash: HashMap<SecretHash, usize>,
}

impl Authenticator {
    /// `orgs` yields (org ID, its secret hashes) in config order; the index is the org's position.
    pub fn new<'a>(orgs: impl IntoIterator<Item = (&'a str, Vec<SecretHash>)>) -> Self {
        let mut by_org = HashMap::new();
        let mut by_hash = HashMap::new();
        for (index, (id, hashes)) in orgs.into_iter().enumerate() {
            for hash in &hashes {
                by_hash.insert(*hash, index);
            }
            by_org.insert(id.to_ascii_lowercase().into_bytes().into(), (index, hashes));
        }
        Self { by_org, by_hash }
    }

    /// The index of the org whose credentials the request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<usize, AuthError> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(AuthError::Missing)?;
        if values.next().is_some() {
            return Err(AuthError::Duplicate);
        }
        match presented(value.as_bytes())? {
            Presented::Basic { decoded, colon } => {
                let (org, secret) = (&decoded[..colon], &decoded[colon + 1..]);
                // Hash before the lookup so an unknown org costs the same as a wrong secret.
                let hash = hash_secret(secret);
                let (index, hashes) = self.by_org.get(org).ok_or(AuthError::Rejected)?;
                let matched = hashes
                    .iter()
                    .fold(subtle::Choice::from(0), |acc, h| acc | h.ct_eq(&hash));
                if bool::from(matched) {
                    Ok(*index)
                } else {
                    Err(AuthError::Rejected)
                }
            }
            // The lookup is keyed by a SHA-256 of the secret, so its timing says nothing useful
            // about the secret itself.
            Presented::Bearer(secret) => self
                .by_hash
                .get(&hash_secret(secret))
                .copied()
                .ok_or(AuthError::Rejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn authenticator() -> Authenticator {
        Authenticator::new([
            ("org-a", vec![hash_secret(b"secret-a")]),
            (
                "org-b",
                vec![hash_secret(b"old-secret-b"), hash_secret(b"secret-b")],
            ),
        ])
    }

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn basic(user_secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_secret))
    }

    #[test]
    fn basic_binds_to_the_named_org() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(&with(&[&basic("org-a:secret-a")])), Ok(0));
        assert_eq!(auth.authenticate(&with(&[&basic("org-b:secret-b")])), Ok(1));
        assert_eq!(
            auth.authenticate(&with(&[&basic("org-b:old-secret-b")])),
            Ok(1)
        );
        // Org IDs are matched case-insensitively, the scheme too.
        let upper = format!("bAsIc {}", STANDARD.encode("ORG-A:secret-a"));
        assert_eq!(auth.authenticate(&with(&[&upper])), Ok(0));
    }

    #[test]
    fn another_orgs_secret_never_works() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate(&with(&[&basic("org-a:secret-b")])),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            auth.authenticate(&with(&[&basic("org-b:secret-a")])),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            auth.authenticate(&with(&[&basic("org-c:secret-a")])),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn bearer_secret_alone_names_the_org() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(&with(&["Bearer secret-b"])), Ok(1));
        assert_eq!(auth.authenticate(&with(&["bearer  secret-a "])), Ok(0));
        assert_eq!(
            auth.authenticate(&with(&["Bearer secret-c"])),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn malformed_and_missing_headers() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate(&HeaderMap::new()),
            Err(AuthError::Missing)
        );
        for bad in [
            "Basic",
            "Basic ",
            "Basic !!!not-base64",
            &basic("no-colon"),
            &basic(":secret-a"),
            &basic("org-a:"),
            "Digest abc",
            "secret-a",
        ] {
            assert_eq!(
                auth.authenticate(&with(&[bad])),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
        let non_utf8_user = format!("Basic {}", STANDARD.encode(b"\xff\xfe:secret-a"));
        assert_eq!(
            auth.authenticate(&with(&[&non_utf8_user])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let auth = authenticator();
        let good = basic("org-a:secret-a");
        assert_eq!(
            auth.authenticate(&with(&[&good, "Bearer secret-b"])),
            Err(AuthError::Duplicate)
        );
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = hash_secret(b"secret-a");
        assert_eq!(parse_hash(&hex::encode(hash)), Some(hash));
        assert_eq!(parse_hash("zz"), None);
    }
}
