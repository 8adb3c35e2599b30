# The gateway's own IAM role: allowed to assume the org roles and nothing else. On EKS it is
# taken through IRSA by the chart's service account; elsewhere attach the policy to whatever
# identity the gateway runs with (instance profile, ECS task role).

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
  description = "Name of the gateway's role."
  type        = string
  default     = "genesys-lambda-gateway"
}

variable "org_role_arns" {
  description = "ARNs of the org roles (deploy/iam/terraform/org-role) the gateway may assume."
  type        = list(string)
}

variable "eks_oidc_provider_arn" {
  description = "IRSA: the cluster's OIDC provider ARN. Empty: no IRSA trust."
  type        = string
  default     = ""
}

variable "service_account" {
  description = "IRSA: namespace/name of the chart's service account."
  type        = string
  default     = "genesys-lambda-gateway/genesys-lambda-gateway"
}

locals {
  oidc_provider = replace(var.eks_oidc_provider_arn, "/^arn:aws:iam::[0-9]+:oidc-provider\\//", "")
  namespace     = split("/", var.service_account)[0]
  account_name  = split("/", var.service_account)[1]
}

data "aws_iam_policy_document" "trust" {
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn == "" ? [] : [1]
    content {
      sid     = "TheGatewayServiceAccountOnEks"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_provider}:sub"
        values   = ["system:serviceaccount:${local.namespace}:${local.account_name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_provider}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn == "" ? [1] : []
    content {
      sid     = "Ec2Instances"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = ["ec2.amazonaws.com"]
      }
    }
  }
}

data "aws_iam_policy_document" "assume_org_roles" {
  statement {
    sid       = "AssumeTheConfiguredOrgRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = var.org_role_arns
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.trust.json
}

resource "aws_iam_role_policy" "assume_org_roles" {
  name   = "assume-org-roles"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.assume_org_roles.json
}

output "role_arn" {
  description = "The gateway's role: the principal in every org role's trust policy, and the IRSA annotation."
  value       = aws_iam_role.this.arn
}
