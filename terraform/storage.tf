resource "aws_kms_key" "this" {
  description             = "${local.name}: model artifacts, secrets and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 14
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:a key policy's "*" resource means this key only
  #checkov:skip=CKV_AWS_356:a key policy's "*" resource means this key only
  #checkov:skip=CKV_AWS_109:the account root administers its own key (AWS's default key policy)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
  }
  statement { # CloudWatch alarms publish to the alerts topic, which this key encrypts (alerts.tf)
    sid       = "CloudWatchAlarmsToAlertsTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

# Model artifacts: best_model.keras + its metadata JSON, uploaded by the training host and
# pulled by the API hosts at boot (replaces the manual scp).
resource "aws_s3_bucket" "models" {
  #checkov:skip=CKV_AWS_144:cross-region replication of a re-trainable model is not worth its cost
  #checkov:skip=CKV_AWS_18:access logging would need a second bucket; CloudTrail data events cover audits
  #checkov:skip=CKV2_AWS_62:no consumer for bucket event notifications
  bucket_prefix = "${local.name}-models-"
  force_destroy = false
}

resource "aws_s3_bucket_versioning" "models" {
  bucket = aws_s3_bucket.models.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "models" {
  bucket                  = aws_s3_bucket.models.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    id     = "expire-old-model-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 180
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# Secrets: generated here, kept as SecureString parameters, read by each host's instance role
# at boot. They never appear in user_data.
resource "random_password" "secret" {
  for_each = toset(["api_token", "redis_password", "flask_secret_key", "grafana_admin_password"])

  length  = 40
  special = false
}

resource "aws_ssm_parameter" "secret" {
  for_each = random_password.secret

  name   = "${local.ssm_prefix}/${each.key}"
  type   = "SecureString"
  key_id = aws_kms_key.this.arn
  value  = each.value.result
}
