# State that must outlive its host (a change of a host's settings re-creates it) lives on an EBS volume
# of its own, mounted by provisioning (deploy/provision/data_volume.sh) and snapshotted daily by Data
# Lifecycle Manager: Redis's data on api-1 (accounts, audit trail, results, readings; not with
# ElastiCache, which keeps its own snapshots) and Prometheus's metrics on the monitoring host.
locals {
  # subnet: the index in aws_subnet.private of the host's subnet (local.hosts; a test checks it)
  data_volumes = merge(
    var.use_elasticache ? {} : {
      redis = { host = local.redis_host, subnet = 0, size_gb = var.redis_volume_size_gb, snapshot_id = var.redis_restore_snapshot_id }
    },
    {
      prometheus = { host = "monitoring", subnet = 1, size_gb = var.prometheus_volume_size_gb, snapshot_id = "" }
    },
  )
}

resource "aws_ebs_volume" "data" {
  for_each = local.data_volumes

  availability_zone = aws_subnet.private[each.value.subnet].availability_zone
  size              = each.value.size_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = aws_kms_key.this.arn
  snapshot_id       = each.value.snapshot_id == "" ? null : each.value.snapshot_id

  tags = { Name = "${local.name}-${each.key}-data", Snapshot = "${local.name}-data" }
}

resource "aws_volume_attachment" "data" {
  for_each = local.data_volumes

  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[each.key].id
  instance_id = aws_instance.host[each.value.host].id

  stop_instance_before_detaching = true # the service stops cleanly (Redis flushes its AOF) first
}

resource "aws_dlm_lifecycle_policy" "data" {
  description        = "${local.name}: daily snapshots of the data volumes"
  execution_role_arn = aws_iam_role.dlm.arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = { Snapshot = "${local.name}-data" }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = [var.data_snapshot_time_utc]
      }

      retain_rule {
        count = var.data_snapshot_retain_count
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
  name               = "${local.name}-dlm"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json
}

resource "aws_iam_role_policy_attachment" "dlm" {
  role       = aws_iam_role.dlm.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}
