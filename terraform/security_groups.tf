# One security group per role; rules reference groups, not addresses (see local.internal_flows).
resource "aws_security_group" "role" {
  #checkov:skip=CKV2_AWS_5:attached through aws_instance.host (for_each) and the ElastiCache group, which the scan cannot resolve
  for_each = toset(local.role_names)

  name        = "${local.name}-${each.key}"
  description = "Pneumonia platform: ${each.key} role"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${local.name}-${each.key}", Role = each.key }

  lifecycle {
    create_before_destroy = true
  }
}

# The only rules open to the world: HTTP and HTTPS to Nginx.
resource "aws_vpc_security_group_ingress_rule" "nginx_public" {
  #checkov:skip=CKV_AWS_260:Nginx is the public web entry point; port 80 is meant to be open to the world
  for_each = toset(["80", "443"])

  security_group_id = aws_security_group.role["nginx"].id
  description       = "Public web traffic to Nginx"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_security_group_ingress_rule" "admin_ssh" {
  for_each = toset(var.admin_ssh_cidrs)

  security_group_id = aws_security_group.role["nginx"].id
  description       = "SSH to the bastion from an admin network"
  cidr_ipv4         = each.key
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_vpc_security_group_ingress_rule" "internal" {
  for_each = local.internal_flows

  security_group_id            = aws_security_group.role[each.value.to].id
  referenced_security_group_id = aws_security_group.role[each.value.from].id
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "internal" {
  for_each = local.internal_flows

  security_group_id            = aws_security_group.role[each.value.from].id
  referenced_security_group_id = aws_security_group.role[each.value.to].id
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

# Hosts fetch packages, the repository, S3 objects and SSM over HTTPS (and apt mirrors over HTTP);
# the monitoring host publishes alerts to SNS.
resource "aws_vpc_security_group_egress_rule" "web" {
  for_each = {
    for pair in setproduct(["nginx", "ui", "api", "monitoring", "training"], ["80", "443"]) :
    "${pair[0]}_${pair[1]}" => { role = pair[0], port = tonumber(pair[1]) }
  }

  security_group_id = aws_security_group.role[each.value.role].id
  description       = "Packages, git, S3, SSM and SNS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}
