# The role one Genesys org's data actions run as, in that org's (or its customer's) AWS account.
# Only the gateway's role may assume it, and only with sts:ExternalId = the Genesys org ID; it
# may invoke the listed functions and nothing else.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "name" {
  description = "Name of the role."
  type        = string
  default     = "genesys-data-actions"
}

variable "gateway_role_arn" {
  description = "ARN of the gateway's own IAM role (the principal the role trusts)."
  type        = string
}

variable "genesys_org_id" {
  description = "The Genesys Cloud org ID: required as sts:ExternalId."
  type        = string
}

variable "function_arns" {
  description = "Unqualified ARNs of the Lambda functions the org's data actions may invoke."
  type        = list(string)
}

variable "max_session_duration" {
  description = "Longest session, in seconds; at least the gateway's credentials.session_duration."
  type        = number
  default     = 3600
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "GenesysLambdaGatewayForThisOrgOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.gateway_role_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.genesys_org_id]
    }
  }
}

data "aws_iam_policy_document" "invoke" {
  statement {
    sid       = "InvokeTheListedFunctionsOnly"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for arn in var.function_arns : [arn, "${arn}:*"]])
  }
}

resource "aws_iam_role" "this" {
  name                 = var.name
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
}

resource "aws_iam_role_policy" "invoke" {
  name   = "invoke-listed-functions"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.invoke.json
}

output "role_arn" {
  description = "Put this in the org's role_arn in the gateway config."
  value       = aws_iam_role.this.arn
}
