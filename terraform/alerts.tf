# Where the platform's alerts go. Alertmanager on the monitoring host publishes every alert Prometheus
# fires to this topic, and CloudWatch the hosts' failed status checks (below) (deploy/provision/write_alertmanager.py; the host's role may publish here and
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

# Who watches the watcher: Prometheus cannot report its own host's failure. CloudWatch checks every
# host's EC2 status checks (free, each minute) and tells the same topic when one fails for 3 minutes
# and when it passes again. A stopped host (the training host, say) sends no data and stays silent.
resource "aws_cloudwatch_metric_alarm" "status_check" {
  for_each = local.hosts

  alarm_name          = "${local.name}-${each.key}-status-check"
  alarm_description   = "EC2 status checks of the ${each.key} host fail: the host or the hardware under it"
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  dimensions          = { InstanceId = aws_instance.host[each.key].id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}
