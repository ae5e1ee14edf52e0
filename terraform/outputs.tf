output "public_url" {
  description = "The platform's URL (Nginx, HTTPS; plain HTTP redirects here). Until a CA-issued certificate replaces the self-signed one, browsers ask the user to accept it."
  value       = "https://${aws_eip.nginx.public_ip}/"
}

output "grafana_url" {
  description = "Grafana behind Nginx (Grafana login; admin password in SSM at <prefix>/grafana_admin_password)."
  value       = "https://${aws_eip.nginx.public_ip}/grafana/"
}

output "alert_topic_arn" {
  description = "SNS topic of the alerts (Alertmanager publishes every firing and resolved alert); subscribe chat or paging endpoints here."
  value       = aws_sns_topic.alerts.arn
}

output "private_ips" {
  description = "Private IP of every host, by host name."
  value       = { for k, h in local.hosts : k => h.ip }
}

output "model_bucket" {
  description = "S3 bucket of the model artifacts."
  value       = aws_s3_bucket.models.bucket
}

output "secrets_ssm_prefix" {
  description = "SSM Parameter Store prefix of the generated secrets (SecureString)."
  value       = local.ssm_prefix
}

output "ssm_commands" {
  description = "Shell on each host through AWS Systems Manager (no open SSH port needed)."
  value       = { for k, i in aws_instance.host : k => "aws ssm start-session --region ${var.region} --target ${i.id}" }
}

output "ssh_commands" {
  description = "SSH to each host through the Nginx bastion (only when admin_ssh_cidrs is set)."
  value = length(var.admin_ssh_cidrs) == 0 ? {} : {
    for k, h in local.hosts : k => (
      k == "nginx"
      ? "ssh -i ${var.private_key_path} ubuntu@${aws_eip.nginx.public_ip}"
      : "ssh -i ${var.private_key_path} -J ubuntu@${aws_eip.nginx.public_ip} ubuntu@${h.ip}"
    )
  }
}

output "redis_endpoint" {
  description = "Redis URL used by the API hosts."
  value       = local.redis_url
}

output "data_volume_ids" {
  description = "EBS volumes of the state that outlives its host (redis, unless ElastiCache; prometheus), snapshotted daily."
  value       = { for name, volume in aws_ebs_volume.data : name => volume.id }
}
