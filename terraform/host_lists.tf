# The address lists that change when hosts come or go (api_instance_count, enable_training_instance).
# They live in one SSM parameter, not in user_data: a change updates the parameter, and the hosts
# that read it (Nginx's upstreams, the UI's API addresses, Prometheus's targets) apply it within a
# minute (deploy/systemd/pneumonia-host-lists.timer runs `provision.sh refresh`), instead of being
# re-created. One NAME=value line each; provision.sh accepts only these names and address characters.
locals {
  host_lists = {
    UI_SERVERS    = "${local.hosts.ui.ip}:5001"
    API_SERVERS   = join(" ", [for ip in local.api_ips : "${ip}:5000"])
    NODE_TARGETS  = join(" ", [for k, h in local.hosts : "${h.ip}:9100=${h.role}"])
    UI_TARGETS    = "${local.hosts.ui.ip}:5001"
    API_TARGETS   = join(" ", [for ip in local.api_ips : "${ip}:5000"])
    REDIS_TARGETS = "${local.redis_ip}:9121"
    NGINX_TARGETS = "${local.hosts.nginx.ip}:9113"
    EDGE_TARGETS  = "${local.hosts.nginx.ip}:3903"
  }
  host_list_roles = ["nginx", "ui", "monitoring"]
}

resource "aws_ssm_parameter" "host_lists" {
  name   = "${local.ssm_prefix}/host_lists"
  type   = "SecureString" # not secret; encrypted with the project key like every parameter here
  key_id = aws_kms_key.this.arn
  value  = join("\n", [for name, value in local.host_lists : "${name}=${value}"])
}
