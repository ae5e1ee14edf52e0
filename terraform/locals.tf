locals {
  name = var.project_name
  azs  = slice(data.aws_availability_zones.available.names, 0, length(var.public_subnet_cidrs))

  # Fixed private addresses (cidrhost of each subnet), so every user_data gets its peers'
  # addresses from Terraform without a dependency cycle between instances.
  hosts = merge(
    {
      nginx      = { role = "nginx", subnet_id = aws_subnet.public[0].id, ip = cidrhost(var.public_subnet_cidrs[0], 10) }
      ui         = { role = "ui", subnet_id = aws_subnet.private[0].id, ip = cidrhost(var.private_subnet_cidrs[0], 10) }
      monitoring = { role = "monitoring", subnet_id = aws_subnet.private[1].id, ip = cidrhost(var.private_subnet_cidrs[1], 10) }
    },
    {
      for i in range(var.api_instance_count) : "api-${i + 1}" => {
        role      = "api"
        subnet_id = aws_subnet.private[i % length(aws_subnet.private)].id
        ip        = cidrhost(var.private_subnet_cidrs[i % length(var.private_subnet_cidrs)], 20 + i)
      }
    },
    var.enable_training_instance ? {
      training = { role = "training", subnet_id = aws_subnet.private[0].id, ip = cidrhost(var.private_subnet_cidrs[0], 30) }
    } : {}
  )

  api_ips    = [for k, h in local.hosts : h.ip if h.role == "api"]
  redis_host = "api-1" # Redis runs here unless use_elasticache; its data volume is attached here
  redis_ip   = local.hosts[local.redis_host].ip

  # Every allowed flow between roles. Each entry becomes an ingress rule on the destination's
  # security group and an egress rule on the source's, both referencing the other group.
  role_names = ["nginx", "ui", "api", "monitoring", "training", "redis"]
  base_flows = {
    nginx_to_ui              = { from = "nginx", to = "ui", port = 5001, description = "Nginx proxies to the UI" }
    nginx_to_api             = { from = "nginx", to = "api", port = 5000, description = "Nginx /api/ for programmatic clients" }
    nginx_to_grafana         = { from = "nginx", to = "monitoring", port = 3000, description = "Nginx /grafana/ (Grafana login)" }
    ui_to_api                = { from = "ui", to = "api", port = 5000, description = "UI calls the API" }
    training_to_api          = { from = "training", to = "api", port = 5000, description = "training host posts results" }
    monitoring_to_api        = { from = "monitoring", to = "api", port = 5000, description = "Prometheus scrapes API /metrics" }
    monitoring_to_ui         = { from = "monitoring", to = "ui", port = 5001, description = "Prometheus scrapes UI /metrics" }
    monitoring_to_redis_exp  = { from = "monitoring", to = "api", port = 9121, description = "Prometheus scrapes redis_exporter" }
    monitoring_to_nginx_exp  = { from = "monitoring", to = "nginx", port = 9113, description = "Prometheus scrapes nginx_exporter" }
    monitoring_to_nginx_edge = { from = "monitoring", to = "nginx", port = 3903, description = "Prometheus scrapes mtail (Nginx answers by status)" }
    monitoring_to_node_nginx = { from = "monitoring", to = "nginx", port = 9100, description = "node_exporter" }
    monitoring_to_node_ui    = { from = "monitoring", to = "ui", port = 9100, description = "node_exporter" }
    monitoring_to_node_api   = { from = "monitoring", to = "api", port = 9100, description = "node_exporter" }
    monitoring_to_node_mon   = { from = "monitoring", to = "monitoring", port = 9100, description = "node_exporter" }
    monitoring_to_node_train = { from = "monitoring", to = "training", port = 9100, description = "node_exporter" }
  }
  # Redis lives on the API host, or in ElastiCache behind its own group.
  redis_flows = var.use_elasticache ? {
    api_to_redis      = { from = "api", to = "redis", port = 6379, description = "API stores results in ElastiCache" }
    training_to_redis = { from = "training", to = "redis", port = 6379, description = "batch inference writes results" }
    } : {
    training_to_redis = { from = "training", to = "api", port = 6379, description = "batch inference writes results" }
  }
  bastion_flows = length(var.admin_ssh_cidrs) > 0 ? {
    for role in ["ui", "api", "monitoring", "training"] : "bastion_ssh_to_${role}" => {
      from = "nginx", to = role, port = 22, description = "SSH through the Nginx bastion"
    }
  } : {}
  internal_flows = merge(local.base_flows, local.redis_flows, local.bastion_flows)

  ssm_prefix = "/${local.name}"
}
