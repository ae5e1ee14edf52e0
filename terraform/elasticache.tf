# Optional managed Redis (use_elasticache = true): auth token, TLS in transit, encrypted at rest.
resource "aws_elasticache_subnet_group" "this" {
  count      = var.use_elasticache ? 1 : 0
  name       = "${local.name}-redis"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_elasticache_replication_group" "this" {
  count = var.use_elasticache ? 1 : 0

  replication_group_id       = "${local.name}-redis"
  description                = "Prediction results, accounts and audit trail"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.elasticache_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.this[0].name
  security_group_ids         = [aws_security_group.role["redis"].id]
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  auth_token                 = random_password.secret["redis_password"].result
  snapshot_retention_limit   = 7
  auto_minor_version_upgrade = true
}
