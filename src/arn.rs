//! Parsing of the two ARNs the config names: the org's IAM role and its Lambda functions.

use std::fmt;
use std::str::FromStr;

use crate::config::is_region;

/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
    pub qualifier: Option<String>,
}

impl FunctionArn {
    /// The ARN without its qualifier, as `Invoke` takes it beside a separate `Qualifier`.
    pub fn unqualified(&self) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// `arn:<partition>:iam::<account>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub account: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnError(String);

impl fmt::Display for ArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArnError {}

fn is_partition(p: &str) -> bool {
    matches!(
        p,
        "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b" | "aws-eusc"
    )
}

fn is_account(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

/// Lambda version (`$LATEST`, digits) or alias name.
pub fn is_qualifier(q: &str) -> bool {
    q == "$LATEST"
        || ((1..=128).contains(&q.len())
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

impl FromStr for FunctionArn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| ArnError(format!("{s:?} is not a Lambda function ARN: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 7 && parts.len() != 8 {
            return Err(fail(
                "expected arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]",
            ));
        }
        if parts[0] != "arn" || !is_partition(parts[1]) {
            return Err(fail("it must start with arn:<partition>"));
        }
        if parts[2] != "lambda" || parts[5] != "function" {
            return Err(fail(
                "the service must be lambda and the resource function:<name>",
            ));
        }
        if !is_region(parts[3]) {
            return Err(fail("the region cannot be read from it"));
        }
        if !is_account(parts[4]) {
            return Err(fail("the account must be 12 digits"));
        }
        let name = parts[6];
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail(
                "the function name must be 1-64 letters, digits, '-' or '_'",
            ));
        }
        let qualifier = parts.get(7).map(|q| q.to_string());
        if let Some(q) = &qualifier
            && !is_qualifier(q)
        {
            return Err(fail("the qualifier is not a version or alias name"));
        }
        Ok(FunctionArn {
            partition: parts[1].into(),
            region: parts[3].into(),
            account: parts[4].into(),
            name: name.into(),
            qualifier,
        })
    }
}

impl FromStr for RoleArn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| ArnError(format!("{s:?} is not an IAM role ARN: {why}"));
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || !is_partition(parts[1]) {
            return Err(fail("expected arn:aws:iam::<account>:role/<name>"));
        }
        if parts[2] != "iam" || !parts[3].is_empty() {
            return Err(fail("the service must be iam, with no region"));
        }
        if !is_account(parts[4]) {
            return Err(fail("the account must be 12 digits"));
        }
        let Some(path_and_name) = parts[5].strip_prefix("role/") else {
            return Err(fail("the resource must be role/<name>"));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or_default();
        let valid = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(fail(
                "the role name must be 1-64 characters of letters, digits or +=,.@_-",
            ));
        }
        Ok(RoleArn {
            account: parts[4].into(),
            name: name.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arn_with_and_without_qualifier() {
        let arn: FunctionArn =
            "arn:aws:lambda:eu-west-1:111122223333:function:lookup-customer:live"
                .parse()
                .unwrap();
        assert_eq!(arn.region, "eu-west-1");
        assert_eq!(arn.account, "111122223333");
        assert_eq!(arn.name, "lookup-customer");
        assert_eq!(arn.qualifier.as_deref(), Some("live"));
        assert_eq!(
            arn.unqualified(),
            "arn:aws:lambda:eu-west-1:111122223333:function:lookup-customer"
        );
        let arn: FunctionArn =
            "arn:aws-us-gov:lambda:us-gov-west-1:111122223333:function:f:$LATEST"
                .parse()
                .unwrap();
        assert_eq!(arn.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn bad_function_arns_say_why() {
        for (arn, why) in [
            ("lookup-customer", "expected arn:aws:lambda"),
            (
                "arn:aws:lambda:Europe:111122223333:function:f",
                "region cannot be read",
            ),
            ("arn:aws:lambda:eu-west-1:1111:function:f", "12 digits"),
            (
                "arn:aws:sqs:eu-west-1:111122223333:function:f",
                "service must be lambda",
            ),
            (
                "arn:aws:lambda:eu-west-1:111122223333:function:f/../g",
                "function name",
            ),
            (
                "arn:aws:lambda:eu-west-1:111122223333:function:f:a.b",
                "qualifier",
            ),
            (
                "arn:gcp:lambda:eu-west-1:111122223333:function:f",
                "arn:<partition>",
            ),
        ] {
            let err = arn.parse::<FunctionArn>().unwrap_err().to_string();
            assert!(err.contains(why), "{arn}: {err}");
        }
    }

    #[test]
    fn role_arns() {
        let role: RoleArn = "arn:aws:iam::111122223333:role/path/genesys-data-actions"
            .parse()
            .unwrap();
        assert_eq!(role.account, "111122223333");
        assert_eq!(role.name, "genesys-data-actions");
        assert!(
            "arn:aws:iam::111122223333:user/bob"
                .parse::<RoleArn>()
                .is_err()
        );
        assert!(
            "arn:aws:iam:us-east-1:111122223333:role/r"
                .parse::<RoleArn>()
                .is_err()
        );
        assert!(
            "arn:aws:iam::111122223333:role/"
                .parse::<RoleArn>()
                .is_err()
        );
    }
}
