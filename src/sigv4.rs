//! AWS Signature Version 4 for the Lambda Invoke requests of the hot path. The SDK signs every
//! call from scratch (canonicalising through generic machinery and re-deriving the signing key);
//! here the request shape is fixed, and the derived key — which changes only per credentials,
//! day and region — is cached by the caller (see `credentials::Session`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::clock::Utc;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The request parts that are signed.
pub struct Signable<'a> {
    pub method: &'a str,
    /// `Host` as sent (host, plus `:port` when not the scheme's default).
    pub host: &'a str,
    /// The request path as the canonical request holds it: the path as sent (percent-encoded
    /// once) encoded once more, from [`canonical_path`]. Made once per function, not per request.
    pub canonical_path: &'a str,
    /// The query string exactly as sent, without `?` (already encoded, keys in sorted order).
    pub query: &'a str,
    /// Further headers to sign, lower-case names, neither `host` nor `x-amz-date`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// What identifies a signature's scope: `YYYYMMDD/region/service/aws4_request`.
pub struct Scope<'a> {
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

impl Scope<'_> {
    pub fn date(&self) -> &str {
        &self.amz_date[..8]
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The lower-case hex of a SHA-256 digest, on the stack.
pub struct HexDigest([u8; 64]);

impl HexDigest {
    fn of(digest: impl AsRef<[u8]>) -> Self {
        let mut hex = [0u8; 64];
        hex::encode_to_slice(digest, &mut hex).expect("a 32-byte digest");
        HexDigest(hex)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex is ASCII")
    }
}

pub fn sha256_hex(data: &[u8]) -> HexDigest {
    HexDigest::of(Sha256::digest(data))
}

/// The key derived from the secret for one day, region and service.
pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(
        format!("AWS4{secret_access_key}").as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub fn uri_encode(out: &mut String, input: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// The path as signed for the path `path` as sent: every service but S3 signs the path
/// percent-encoded a second time.
pub fn canonical_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + path.len() / 2);
    uri_encode(&mut out, path, true);
    out
}

/// The most headers a [`Signable`] may list beside `host` and `x-amz-date`.
pub const MAX_HEADERS: usize = 6;

/// The `Authorization` header value for `request`, signed with `key` (from [`signing_key`]).
///
/// The canonical request and the string to sign are fed straight into their hashes rather than
/// built first; the one allocation is the header itself, sized exactly so that a `HeaderValue`
/// takes it over without a copy. Panics if `request` lists more than [`MAX_HEADERS`] headers.
pub fn authorization(
    access_key_id: &str,
    key: &[u8; 32],
    scope: &Scope<'_>,
    request: &Signable<'_>,
) -> String {
    // Canonical headers are sorted by name; host and x-amz-date go among the caller's.
    let mut all = [("", ""); MAX_HEADERS + 2];
    let count = request.headers.len() + 2;
    all[0] = ("host", request.host);
    all[1] = ("x-amz-date", scope.amz_date);
    all[2..count].copy_from_slice(request.headers);
    let all = &mut all[..count];
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));

    let credential_scope = [
        scope.date(),
        "/",
        scope.region,
        "/",
        scope.service,
        "/aws4_request",
    ];
    let signed_len = all.iter().map(|(name, _)| name.len() + 1).sum::<usize>() - 1;
    let mut header = String::with_capacity(
        ALGORITHM.len()
            + " Credential=".len()
            + access_key_id.len()
            + "/".len()
            + credential_scope
                .iter()
                .map(|part| part.len())
                .sum::<usize>()
            + ", SignedHeaders=".len()
            + signed_len
            + ", Signature=".len()
            + 64,
    );
    header.push_str(ALGORITHM);
    header.push_str(" Credential=");
    header.push_str(access_key_id);
    header.push('/');
    credential_scope
        .iter()
        .for_each(|part| header.push_str(part));
    header.push_str(", SignedHeaders=");
    let signed_start = header.len();
    for (i, (name, _)) in all.iter().enumerate() {
        if i > 0 {
            header.push(';');
        }
        header.push_str(name);
    }
    let signed_headers = signed_start..header.len();

    let mut canonical = Sha256::new();
    for part in [
        request.method,
        "\n",
        request.canonical_path,
        "\n",
        request.query,
        "\n",
    ] {
        canonical.update(part);
    }
    for (name, value) in all.iter() {
        for part in [*name, ":", value.trim(), "\n"] {
            canonical.update(part);
        }
    }
    canonical.update("\n");
    canonical.update(&header[signed_headers]);
    canonical.update("\n");
    canonical.update(request.payload_sha256);
    let canonical_hex = HexDigest::of(canonical.finalize());

    let mut string_to_sign =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [ALGORITHM, "\n", scope.amz_date, "\n"] {
        string_to_sign.update(part.as_bytes());
    }
    credential_scope
        .iter()
        .for_each(|part| string_to_sign.update(part.as_bytes()));
    string_to_sign.update(b"\n");
    string_to_sign.update(&canonical_hex.0);
    let signature = string_to_sign.finalize().into_bytes();

    header.push_str(", Signature=");
    header.push_str(HexDigest::of(signature).as_str());
    debug_assert_eq!(header.len(), header.capacity());
    header
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for `time`; times before 1970 read as 1970.
pub fn amz_date(time: std::time::SystemTime) -> String {
    let mut text = *b"00000000T000000Z";
    Utc::from(time).put_fields(&mut text, [0, 4, 6, 9, 11, 13]);
    String::from_utf8(text.to_vec()).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;

    /// The same request signed here and by aws-sigv4 (the SDK's signer) gives the same header.
    #[test]
    fn agrees_with_the_sdk_signer() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let body = br#"{"customer":"42"}"#;
        let credentials = Credentials::new(
            "ASIAEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG",
            Some("token/+=".into()),
            None,
            "t",
        );
        let path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A111122223333%3Afunction%3Af/invocations";
        let query = "Qualifier=%24LATEST";
        let headers = [
            ("content-type", "application/json"),
            ("x-amz-client-context", "eyJjdXN0b20iOnt9fQ=="),
            ("x-amz-invocation-type", "RequestResponse"),
            ("x-amz-security-token", "token/+="),
        ];
        let amz = amz_date(time);
        assert_eq!(amz, "20261118T110640Z");
        let scope = Scope {
            amz_date: &amz,
            region: "eu-west-1",
            service: "lambda",
        };
        let key = signing_key("wJalrXUtnFEMI/K7MDENG", scope.date(), "eu-west-1", "lambda");
        let ours = authorization(
            "ASIAEXAMPLE",
            &key,
            &scope,
            &Signable {
                method: "POST",
                host: "lambda.eu-west-1.amazonaws.com",
                canonical_path: &canonical_path(path),
                query,
                headers: &headers,
                payload_sha256: sha256_hex(body).as_str(),
            },
        );

        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("lambda")
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let url = format!("https://lambda.eu-west-1.amazonaws.com{path}?{query}");
        let sdk_headers = [
            ("host", "lambda.eu-west-1.amazonaws.com"),
            ("content-type", "application/json"),
            ("x-amz-client-context", "eyJjdXN0b20iOnt9fQ=="),
            ("x-amz-invocation-type", "RequestResponse"),
        ];
        let signable = SignableRequest::new(
            "POST",
            &url,
            sdk_headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let theirs = instructions
            .headers()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.to_owned())
            .unwrap();
        assert_eq!(ours, theirs);
    }

    /// Checked against the SDK's own date formatting across leap days, centuries and the epoch.
    #[test]
    fn amz_dates_agree_with_the_sdk_formatting() {
        let sdk = |time: SystemTime| {
            aws_smithy_types::DateTime::from(time)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap()
                .replace(['-', ':'], "")
        };
        let mut checked = 0;
        let mut secs: u64 = 0;
        // Every ~2.3 days over 1970..2130 (an odd step, so all times of day come up), plus edges.
        let edges = [
            0,
            951_782_399,
            951_782_400,
            951_868_800,
            4_107_542_400,
            4_102_444_799,
        ];
        while secs < 5_000_000_000 {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(amz_date(time), sdk(time), "at {secs}");
            secs += 199_999;
            checked += 1;
        }
        for secs in edges {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(amz_date(time), sdk(time), "at {secs}");
        }
        assert_eq!(amz_date(SystemTime::UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert!(checked > 20_000);
    }

    #[test]
    fn uri_encoding() {
        let mut out = String::new();
        uri_encode(&mut out, "/a b/%3A~", true);
        assert_eq!(out, "/a%20b/%253A~");
        out.clear();
        uri_encode(&mut out, "$LATEST/x", false);
        assert_eq!(out, "%24LATEST%2Fx");
    }

    /// The AWS documentation's example signing key (Signature Version 4 test suite).
    #[test]
    fn signing_key_matches_the_documented_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
