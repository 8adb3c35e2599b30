//! The files in `deploy/` that users copy: their JSON parses, the IAM policies say what the
//! README promises, the Genesys action points at the gateway's API, and every gateway config
//! shipped there passes the gateway's own validation. (The container image is built and run by
//! scripts/container-test; the Helm chart is linted, rendered and schema-checked by
//! scripts/helm-check; the org-role trust policy is used by every emulator test.)

use std::path::Path;

use genesys_lambda_gateway::config::Config;
use serde_json::Value;

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn statements(policy: &Value) -> &Vec<Value> {
    assert_eq!(policy["Version"], "2012-10-17");
    policy["Statement"].as_array().expect("Statement list")
}

#[test]
fn the_org_role_trusts_the_gateway_only_with_the_org_id_as_external_id() {
    let trust = json("deploy/iam/org-role-trust-policy.json");
    let [statement] = statements(&trust).as_slice() else {
        panic!("one statement")
    };
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert!(
        statement["Principal"]["AWS"]
            .as_str()
            .unwrap()
            .ends_with(":role/genesys-lambda-gateway")
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        "GENESYS_ORG_ID"
    );

    let permissions = json("deploy/iam/org-role-permissions.json");
    for statement in statements(&permissions) {
        assert_eq!(statement["Action"], "lambda:InvokeFunction");
        for resource in statement["Resource"].as_array().unwrap() {
            let resource = resource.as_str().unwrap();
            assert!(
                resource.starts_with("arn:aws:lambda:") && !resource.contains(":function:*"),
                "{resource}: listed functions only"
            );
        }
    }
}

#[test]
fn the_gateway_may_assume_roles_and_nothing_else() {
    let policy = json("deploy/iam/gateway-policy.json");
    for statement in statements(&policy) {
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_ne!(statement["Resource"], "*");
    }
    let irsa = json("deploy/iam/gateway-irsa-trust-policy.json");
    for statement in statements(&irsa) {
        assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    }
}

#[test]
fn the_genesys_action_posts_its_input_to_a_gateway_function_within_the_timeout_range() {
    let integration = json("deploy/genesys/integration.json");
    assert_eq!(integration["integrationType"]["id"], "custom-rest-actions");
    assert!(integration["config"]["current"]["credentials"]["basicAuth"].is_object());

    let action = json("deploy/genesys/customer-lookup.action.json");
    let request = &action["config"]["request"];
    assert_eq!(request["requestType"], "POST");
    assert_eq!(request["requestTemplate"], "${input.rawRequest}");
    assert_eq!(request["headers"]["Content-Type"], "application/json");
    let url = request["requestUrlTemplate"].as_str().unwrap();
    let name = url
        .split_once("/v1/functions/")
        .and_then(|(_, rest)| rest.strip_suffix("/invoke"))
        .unwrap_or_else(|| panic!("{url} is not an invoke URL"));
    assert!(url.starts_with("https://"), "{url}");
    // The same function name in the Helm chart's example config.
    assert!(helm_config().contains(&format!("\n{name} = ")), "{name}");
    let timeout = action["config"]["timeoutSeconds"].as_u64().unwrap();
    assert!((1..=60).contains(&timeout));
    assert!(action["contract"]["input"]["inputSchema"].is_object());
    assert!(action["contract"]["output"]["successSchema"].is_object());
}

#[test]
fn the_grafana_dashboard_is_json() {
    let dashboard = json("deploy/grafana/genesys-lambda-gateway.json");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
}

/// The `config: |` block of the chart's values.yaml.
fn helm_config() -> String {
    let values = include_str!("../deploy/helm/genesys-lambda-gateway/values.yaml");
    let start = values.find("\nconfig: |\n").expect("a config block") + "\nconfig: |\n".len();
    values[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("  "))
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_gateway_configs_pass_validation() {
    // The chart mounts the token hashes from a Secret; stand one in.
    let dir = std::env::temp_dir().join(format!("glg-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = helm_config();
    let mut replaced = text.clone();
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("token_sha256_file = ") {
            let path = path.trim_matches('"');
            let file = dir.join(Path::new(path).file_name().unwrap());
            std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
            replaced = replaced.replace(path, file.to_str().unwrap());
        }
    }
    assert_ne!(
        replaced, text,
        "the chart's config reads its hashes from files"
    );
    let config = Config::parse(&replaced).unwrap_or_else(|e| panic!("values.yaml config: {e}"));
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.server.admin_listen.port(), 9090);

    let compose = include_str!("../deploy/compose/gateway.toml");
    Config::parse(compose).unwrap_or_else(|e| panic!("deploy/compose/gateway.toml: {e}"));

    // The image's built-in config has no org on purpose: it must be replaced.
    let image = include_str!("../deploy/container/gateway.toml");
    let problems = Config::parse(image).unwrap_err().0;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("orgs: no org is configured"));
}
