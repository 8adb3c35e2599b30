//! Provisions the demo org of `config/demo.toml` on the emulator at `AWS_ENDPOINT_URL`
//! (scripts/demo runs it).

#[path = "../tests/support/aws.rs"]
mod support;

const DEMO_ORG: &str = "6f4e2a10-0d7c-4c9b-9a51-2f3e8c7d1b20";
const ACCOUNT: &str = "111111111111";

#[tokio::main]
async fn main() {
    let function = support::create_function(ACCOUNT, "us-west-2", "glg-demo-hello", &[]).await;
    let role = support::create_org_role(
        ACCOUNT,
        "genesys-data-actions",
        DEMO_ORG,
        std::slice::from_ref(&function),
    )
    .await;
    println!("provisioned {role} (sts:ExternalId = {DEMO_ORG}) and {function}");
}
