# Where the platform's alerts go. Alertmanager on the monitoring host publishes every alert Prometheus
# fires to this topic (deploy/provision/write_alertmanager.py; the host's role may publish here and
# nowhere else). Each address of alert_email_addresses is subscribed and must confirm the e-mail SNS
# sends it; chat or paging endpoints can subscribe to the topic (output alert_topic_arn) as well.
resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic_subscription" "alert_email" {
  for_each = toset(var.alert_email_addresses)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}
