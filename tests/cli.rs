//! The command line as users run it: the built binary, its output and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_genesys-lambda-gateway");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("GLG_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_summarises_a_valid_config() {
    let out = run(&["check-config", "--config", "config/example.toml"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("org 91cf9239-f549-465b-8cad-9b46f1420818"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lookup-customer -> arn:aws:lambda:eu-west-1"),
        "{stdout}"
    );
    assert!(stdout.contains("timeout 10s"), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_exits_64() {
    let dir = std::env::temp_dir().join(format!("glg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
default_timeout = "2m"
[[orgs]]
id = "org-a"
role_arn = "arn:aws:iam::111122223333:role/r"
token_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
[orgs.functions]
f = { arn = "arn:aws:lambda:somewhere:111122223333:function:f" }
[[orgs]]
id = "org-a"
role_arn = "not-an-arn"
token_sha256 = "00"
[orgs.functions]
g = { arn = "arn:aws:lambda:us-east-1:111122223333:function:g", timeout = "61s" }
"#,
    )
    .unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    for needle in [
        "server.default_timeout",
        "orgs[0] (id \"org-a\").functions.f.arn",
        "orgs[1] (id \"org-a\").id: duplicate org ID",
        "orgs[1] (id \"org-a\").role_arn",
        "orgs[1] (id \"org-a\").token_sha256",
        "orgs[1] (id \"org-a\").functions.g.timeout",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
    // `serve` refuses the same config the same way, before listening anywhere.
    let out = run(&["serve", "--config", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(64));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_config_file_is_exit_64() {
    let out = run(
        &["check-config", "--config", "/nonexistent/gateway.toml"],
        b"",
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("/nonexistent/gateway.toml"));
}

#[test]
fn hash_secret_matches_sha256_and_ignores_one_trailing_newline() {
    // sha256("secret"), computed independently of the gateway.
    let expected = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    for input in [&b"secret\n"[..], b"secret\r\n", b"secret"] {
        let out = run(&["hash-secret"], input);
        assert!(out.status.success());
        assert_eq!(text(&out.stdout).trim(), expected);
    }
    let out = run(&["hash-secret"], b"");
    assert!(!out.status.success(), "an empty secret is refused");
}

#[test]
fn gen_secret_prints_a_secret_and_its_hash() {
    let out = run(&["gen-secret"], b"");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let secret = field("secret:");
    assert!(secret.len() >= 40 && !secret.contains(':'), "{secret}");
    assert_eq!(field("token_sha256:"), sha256_of(&secret));
    let again = text(&run(&["gen-secret"], b"").stdout);
    assert_ne!(stdout, again, "secrets must be random");
}

#[test]
fn serve_needs_a_config_or_demo() {
    let out = run(&["serve"], b"");
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(text(&out.stderr).contains("--config"));
}

fn sha256_of(secret: &str) -> String {
    hex::encode(genesys_lambda_gateway::auth::hash_secret(secret.as_bytes()))
}

#[test]
fn a_worker_thread_count_that_is_not_a_number_is_refused_with_64() {
    let out = Command::new(BIN)
        .args(["serve", "--config", "config/example.toml"])
        .env("TOKIO_WORKER_THREADS", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "TOKIO_WORKER_THREADS: expected a number of threads of 1 or more, got \"zero\""
        ),
        "{}",
        text(&out.stderr)
    );
}
