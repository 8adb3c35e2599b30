//! Proving an org's wiring before live traffic: a fresh AssumeRole with its ExternalId, then a
//! `DryRun` invocation of every allow-listed function in its region. Used by
//! `check-config --assume` and by the admin listener's `POST /admin/check?org=ID`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::credentials::{AssumeFailure, AssumeRole};
use crate::invoke::{InvokeError, Invoker};
use crate::tenants::Org;

/// What the check found for one org.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    pub org: String,
    pub role_arn: String,
    pub assume: AssumeOutcome,
    pub functions: Vec<FunctionReport>,
    /// True when the role could be assumed and every function may be invoked.
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AssumeOutcome {
    Ok,
    Denied { aws_code: String, message: String },
    Unreachable { message: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionReport {
    pub name: String,
    pub arn: String,
    pub region: String,
    pub result: FunctionOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FunctionOutcome {
    Ok,
    NotFound {
        message: String,
    },
    AccessDenied {
        message: String,
    },
    WrongRegion {
        message: String,
    },
    Error {
        aws_code: String,
        message: String,
    },
    /// Not checked: the role could not be assumed.
    Skipped,
}

/// Checks one org: never through the credential cache, so the trust policy is tested as it is
/// now. Credentials are used, never returned or printed.
pub async fn check_org(assumer: &dyn AssumeRole, invoker: &Invoker, org: &Org) -> OrgReport {
    let request = org.credentials.request().clone();
    let (assume, credentials) = match assumer.assume_role(&request).await {
        Ok(credentials) => (AssumeOutcome::Ok, Some(credentials)),
        Err(AssumeFailure::Rejected { code, message }) => (
            AssumeOutcome::Denied {
                aws_code: code,
                message,
            },
            None,
        ),
        Err(AssumeFailure::Unavailable(message)) => (AssumeOutcome::Unreachable { message }, None),
    };
    let mut reports = Vec::with_capacity(org.functions.len());
    for function in &org.functions {
        let result = match &credentials {
            None => FunctionOutcome::Skipped,
            Some(credentials) => match invoker.dry_run(function, credentials.clone()).await {
                Ok(()) => FunctionOutcome::Ok,
                Err(e) => classify(e),
            },
        };
        let arn = match &function.qualifier {
            Some(q) => format!("{}:{q}", function.unqualified_arn),
            None => function.unqualified_arn.clone(),
        };
        reports.push(FunctionReport {
            name: function.name.clone(),
            arn,
            region: function.arn.region.clone(),
            result,
        });
    }
    let ok = assume == AssumeOutcome::Ok && reports.iter().all(|f| f.result == FunctionOutcome::Ok);
    OrgReport {
        org: org.id.clone(),
        role_arn: org.role_arn.clone(),
        assume,
        functions: reports,
        ok,
    }
}

fn classify(error: InvokeError) -> FunctionOutcome {
    match error {
        InvokeError::Aws { code, message } => {
            let lower = message.to_ascii_lowercase();
            if code == "ResourceNotFoundException" {
                FunctionOutcome::NotFound { message }
            } else if code.contains("AccessDenied") {
                FunctionOutcome::AccessDenied { message }
            } else if lower.contains("not reachable in this region") {
                FunctionOutcome::WrongRegion { message }
            } else {
                FunctionOutcome::Error {
                    aws_code: code,
                    message,
                }
            }
        }
        other => FunctionOutcome::Error {
            aws_code: other.kind().to_owned(),
            message: other.to_string(),
        },
    }
}

/// The reports as a table for a terminal.
pub fn render_table(reports: &[OrgReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let verdict = if r.ok { "OK" } else { "BROKEN" };
        let _ = writeln!(out, "org {}  [{verdict}]", r.org);
        let _ = writeln!(out, "  role      {}", r.role_arn);
        let assume = match &r.assume {
            AssumeOutcome::Ok => "ok".to_owned(),
            AssumeOutcome::Denied { aws_code, message } => {
                format!("denied ({aws_code}: {message})")
            }
            AssumeOutcome::Unreachable { message } => format!("unreachable ({message})"),
        };
        let _ = writeln!(out, "  assume    {assume}");
        for f in &r.functions {
            let result = match &f.result {
                FunctionOutcome::Ok => "ok".to_owned(),
                FunctionOutcome::NotFound { message } => format!("not found ({message})"),
                FunctionOutcome::AccessDenied { message } => format!("access denied ({message})"),
                FunctionOutcome::WrongRegion { message } => format!("wrong region ({message})"),
                FunctionOutcome::Error { aws_code, message } => {
                    format!("error ({aws_code}: {message})")
                }
                FunctionOutcome::Skipped => "not checked (no credentials)".to_owned(),
            };
            let _ = writeln!(out, "  function  {:<24} {:<10} {result}", f.name, f.region);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_errors_are_classified() {
        let aws = |code: &str, message: &str| InvokeError::Aws {
            code: code.into(),
            message: message.into(),
        };
        assert!(matches!(
            classify(aws("ResourceNotFoundException", "Function not found")),
            FunctionOutcome::NotFound { .. }
        ));
        assert!(matches!(
            classify(aws("AccessDeniedException", "not authorized")),
            FunctionOutcome::AccessDenied { .. }
        ));
        assert!(matches!(
            classify(aws(
                "InvalidParameterValueException",
                "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
            )),
            FunctionOutcome::WrongRegion { .. }
        ));
        assert!(matches!(
            classify(InvokeError::Unreachable("connection refused".into())),
            FunctionOutcome::Error { .. }
        ));
    }

    #[test]
    fn reports_serialize_with_a_status_tag() {
        let report = OrgReport {
            org: "o".into(),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            assume: AssumeOutcome::Denied {
                aws_code: "AccessDenied".into(),
                message: "no".into(),
            },
            functions: vec![FunctionReport {
                name: "f".into(),
                arn: "arn:aws:lambda:us-east-1:111122223333:function:f".into(),
                region: "us-east-1".into(),
                result: FunctionOutcome::Skipped,
            }],
            ok: false,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["assume"]["status"], "denied");
        assert_eq!(json["assume"]["aws_code"], "AccessDenied");
        assert_eq!(json["functions"][0]["result"]["status"], "skipped");
        let table = render_table(&[report]);
        assert!(
            table.contains("[BROKEN]") && table.contains("denied (AccessDenied: no)"),
            "{table}"
        );
    }
}
