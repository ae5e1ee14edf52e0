# Redis on the API host keeps its data (accounts, audit trail, results and the clinicians' readings)
# on a volume of its own: it outlives the host, which any change of its user_data replaces, and Data
# Lifecycle Manager snapshots it daily. Not created with ElastiCache (which keeps its own snapshots).
resource "aws_ebs_volume" "redis_data" {
  count = var.use_elasticache ? 0 : 1

  availability_zone = aws_subnet.private[0].availability_zone # the subnet of api-1, the Redis host
  size              = var.redis_volume_size_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = aws_kms_key.this.arn
  snapshot_id       = var.redis_restore_snapshot_id == "" ? null : var.redis_restore_snapshot_id

  tags = { Name = "${local.name}-redis-data", Snapshot = "${local.name}-redis-data" }
}

resource "aws_volume_attachment" "redis_data" {
  count = var.use_elasticache ? 0 : 1

  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.redis_data[0].id
  instance_id = aws_instance.host[local.redis_host].id

  stop_instance_before_detaching = true # Redis stops cleanly (AOF flushed) before a replacement
}

resource "aws_dlm_lifecycle_policy" "redis_data" {
  count = var.use_elasticache ? 0 : 1

  description        = "${local.name}: daily snapshots of the Redis data volume"
  execution_role_arn = aws_iam_role.dlm[0].arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = { Snapshot = "${local.name}-redis-data" }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = [var.redis_snapshot_time_utc]
      }

      retain_rule {
        count = var.redis_snapshot_retain_count
      }
    }
  }
}

data "aws_iam_policy_document" "dlm_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dlm" {
  count = var.use_elasticache ? 0 : 1

  name               = "${local.name}-dlm"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json
}

resource "aws_iam_role_policy_attachment" "dlm" {
  count = var.use_elasticache ? 0 : 1

  role       = aws_iam_role.dlm[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}
