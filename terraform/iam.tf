data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# One role per host role: SSM Session Manager for everyone, plus what that role needs.
resource "aws_iam_role" "host" {
  for_each = toset(["nginx", "ui", "api", "monitoring", "training"])

  name               = "${local.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  for_each   = aws_iam_role.host
  role       = each.value.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "host" {
  for_each = aws_iam_role.host
  name     = each.value.name
  role     = each.value.name
}

locals {
  # Which secrets and which bucket actions each role gets.
  role_secrets = {
    nginx      = []
    ui         = ["api_token", "flask_secret_key"]
    api        = ["api_token", "redis_password"]
    monitoring = ["grafana_admin_password"]
    training   = ["redis_password"]
  }
  role_bucket_actions = {
    api      = ["s3:GetObject", "s3:ListBucket"]
    training = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"]
  }
}

data "aws_iam_policy_document" "host" {
  for_each = aws_iam_role.host

  dynamic "statement" {
    for_each = length(local.role_secrets[each.key]) > 0 ? [1] : []
    content {
      sid       = "ReadOwnSecrets"
      actions   = ["ssm:GetParameter"]
      resources = [for s in local.role_secrets[each.key] : aws_ssm_parameter.secret[s].arn]
    }
  }

  dynamic "statement" { # which addresses serve what (host_lists.tf), re-read every minute
    for_each = contains(local.host_list_roles, each.key) ? [1] : []
    content {
      sid       = "ReadHostLists"
      actions   = ["ssm:GetParameter"]
      resources = [aws_ssm_parameter.host_lists.arn]
    }
  }

  dynamic "statement" { # the operator's CA-issued certificate, when set (README, HTTPS); not managed here
    for_each = each.key == "nginx" ? [1] : []
    content {
      sid       = "ReadOperatorCertificate"
      actions   = ["ssm:GetParameter"]
      resources = ["arn:aws:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${local.ssm_prefix}/tls/*"]
    }
  }

  dynamic "statement" { # Alertmanager's notifications (alerts.tf)
    for_each = each.key == "monitoring" ? [1] : []
    content {
      sid       = "PublishAlerts"
      actions   = ["sns:Publish"]
      resources = [aws_sns_topic.alerts.arn]
    }
  }

  dynamic "statement" {
    for_each = contains(keys(local.role_bucket_actions), each.key) ? [1] : []
    content {
      sid       = "ModelBucket"
      actions   = local.role_bucket_actions[each.key]
      resources = [aws_s3_bucket.models.arn, "${aws_s3_bucket.models.arn}/*"]
    }
  }

  statement {
    sid       = "UseProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "host" {
  for_each = aws_iam_role.host
  name     = "${each.value.name}-least-privilege"
  role     = each.value.name
  policy   = data.aws_iam_policy_document.host[each.key].json
}

# VPC flow logs write to CloudWatch Logs.
data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${local.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "${local.name}-flow-logs"
  role   = aws_iam_role.flow_logs.name
  policy = data.aws_iam_policy_document.flow_logs.json
}
