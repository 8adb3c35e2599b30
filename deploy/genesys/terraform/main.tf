# CX as Code (Genesys Cloud Terraform provider): a Web Services data actions integration with
# Basic Auth credentials for one org, and one data action per gateway function.
# The same pieces as ../integration.json and ../customer-lookup.action.json.

terraform {
  required_version = ">= 1.3"
  required_providers {
    genesyscloud = {
      source  = "mypurecloud/genesyscloud"
      version = ">= 1.40"
    }
  }
}

variable "gateway_url" {
  description = "The gateway's public base URL, e.g. https://lambda-gateway.example.com"
  type        = string
}

variable "org_id" {
  description = "This Genesys Cloud org's ID: the Basic-auth user name (the gateway binds it to this org)."
  type        = string
}

variable "gateway_secret" {
  description = "The secret whose SHA-256 is this org's token_sha256 in the gateway config (genesys-lambda-gateway gen-secret)."
  type        = string
  sensitive   = true
}

variable "functions" {
  description = "Data actions to create: name in the gateway config => action settings."
  type = map(object({
    action_name     = string
    timeout_seconds = number
    input_schema    = string
    output_schema   = string
  }))
}

resource "genesyscloud_integration_credential" "gateway" {
  name                 = "Lambda gateway (Basic Auth)"
  credential_type_name = "basicAuth"
  fields = {
    userName = var.org_id
    password = var.gateway_secret
  }
}

resource "genesyscloud_integration" "gateway" {
  integration_type = "custom-rest-actions"
  intended_state   = "ENABLED"
  config {
    name  = "Lambda gateway"
    notes = "Web Services data actions calling genesys-lambda-gateway"
    credentials = {
      basicAuth = genesyscloud_integration_credential.gateway.id
    }
  }
}

resource "genesyscloud_integration_action" "function" {
  for_each       = var.functions
  name           = each.value.action_name
  category       = genesyscloud_integration.gateway.config[0].name
  integration_id = genesyscloud_integration.gateway.id
  # 1-60 s. Keep it at or above the function's timeout in the gateway config, so the gateway
  # answers 504 `timeout` before Genesys gives up.
  config_timeout_seconds = each.value.timeout_seconds
  contract_input         = each.value.input_schema
  contract_output        = each.value.output_schema
  config_request {
    request_url_template = "${var.gateway_url}/v1/functions/${each.key}/invoke"
    request_type         = "POST"
    # The action's input, unchanged, is the function's event.
    request_template = "$${input.rawRequest}"
    headers = {
      "Content-Type" = "application/json"
      "Accept"       = "application/json"
    }
  }
  config_response {
    success_template = "$${rawResult}"
  }
}
