gateway_url = "https://lambda-gateway.example.com"
org_id      = "91cf9239-f549-465b-8cad-9b46f1420818"
# gateway_secret: pass with TF_VAR_gateway_secret, never in a file.
functions = {
  "customer-lookup" = {
    action_name     = "Customer lookup"
    timeout_seconds = 8
    input_schema    = "{\"type\":\"object\",\"required\":[\"phoneNumber\"],\"properties\":{\"phoneNumber\":{\"type\":\"string\"}}}"
    output_schema   = "{\"type\":\"object\",\"properties\":{\"customerId\":{\"type\":\"string\"},\"tier\":{\"type\":\"string\"}}}"
  }
}
