data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

data "aws_ami" "deep_learning" {
  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = ["Deep Learning OSS Nvidia Driver AMI GPU TensorFlow * (Ubuntu 22.04) *"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  redis_url = var.use_elasticache ? "rediss://${aws_elasticache_replication_group.this[0].primary_endpoint_address}:6379/0" : "redis://${local.redis_ip}:6379/0"

  # Every setting a host's provisioning may read, and which of them each role reads
  # (deploy/provision/provision.sh). A host gets its role's settings and empty ones for the rest, so
  # that a change concerning one role (new training options) replaces only the hosts that read it: a
  # replaced host keeps only what is on a data volume or in SSM. Which hosts exist is not among them:
  # the address lists are in SSM (host_lists.tf), so adding or removing a host replaces no other.
  settings = {
    model_bucket    = aws_s3_bucket.models.bucket
    alert_topic_arn = aws_sns_topic.alerts.arn
    monitoring_ip   = local.hosts.monitoring.ip
    public_ip       = aws_eip.nginx.public_ip
    redis_url       = local.redis_url
    use_elasticache = tostring(var.use_elasticache)
    max_upload_mb   = tostring(var.max_upload_mb)
    result_ttl      = tostring(var.result_ttl_days * 86400)
    training_args   = var.training_args
  }
  role_settings = {
    nginx      = ["monitoring_ip", "public_ip", "max_upload_mb"]
    ui         = ["max_upload_mb"]
    api        = ["model_bucket", "redis_url", "use_elasticache", "max_upload_mb", "result_ttl"]
    monitoring = ["public_ip", "alert_topic_arn"]
    training   = ["model_bucket", "training_args"]
  }

  user_data = {
    for key, host in local.hosts : key => templatefile("${path.module}/templates/user_data.sh.tftpl", merge(
      { for name, value in local.settings : name => contains(local.role_settings[host.role], name) ? value : "" },
      {
        role           = host.role
        host_name      = key
        repo_url       = var.repo_url
        repo_branch    = var.repo_branch
        region         = var.region
        ssm_prefix     = local.ssm_prefix
        data_volume_id = join("", [for name, v in local.data_volumes : aws_ebs_volume.data[name].id if v.host == key])
      },
    ))
  }
}

resource "aws_instance" "host" {
  #checkov:skip=CKV_AWS_126:detailed monitoring is the detailed_monitoring variable (off by default: it costs extra; Prometheus covers the hosts)
  for_each = local.hosts

  ami                    = each.value.role == "training" ? data.aws_ami.deep_learning.id : data.aws_ami.ubuntu.id
  instance_type          = var.instance_types[each.value.role]
  subnet_id              = each.value.subnet_id
  private_ip             = each.value.ip
  vpc_security_group_ids = [aws_security_group.role[each.value.role].id]
  key_name               = aws_key_pair.this.key_name
  iam_instance_profile   = aws_iam_instance_profile.host[each.value.role].name
  monitoring             = var.detailed_monitoring
  ebs_optimized          = true
  user_data              = local.user_data[each.key]

  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = each.value.role == "training" ? 100 : var.root_volume_size_gb
    encrypted             = true
    kms_key_id            = aws_kms_key.this.arn
    delete_on_termination = true
  }

  tags = { Name = "${local.name}-${each.key}", Role = each.value.role }

  depends_on = [aws_nat_gateway.this, aws_route_table_association.private, aws_ssm_parameter.host_lists]
}

# The one public address: Nginx. Allocated before the host and associated after it, so that the
# host's user_data can carry the address (Nginx's TLS certificate names it; Grafana's root_url, on the
# monitoring host, builds its absolute links from it).
resource "aws_eip" "nginx" {
  domain = "vpc"
  tags   = { Name = "${local.name}-nginx" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_eip_association" "nginx" {
  allocation_id = aws_eip.nginx.id
  instance_id   = aws_instance.host["nginx"].id
}
