variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1 or us-gov-west-1."
  }
}

variable "project_name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "pneumonia"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.project_name))
    error_message = "project_name: 3-21 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /24 or larger."
  }
}

variable "public_subnet_cidrs" {
  description = "Public subnets, one per availability zone (Nginx and the NAT gateways live here)."
  type        = list(string)
  default     = ["10.20.0.0/24", "10.20.1.0/24"]

  validation {
    condition     = length(var.public_subnet_cidrs) >= 2 && alltrue([for c in var.public_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Give at least two valid public subnet CIDRs (two availability zones)."
  }
}

variable "private_subnet_cidrs" {
  description = "Private subnets, one per availability zone (UI, API, Redis, monitoring, training)."
  type        = list(string)
  default     = ["10.20.10.0/24", "10.20.11.0/24"]

  validation {
    condition     = length(var.private_subnet_cidrs) >= 2 && alltrue([for c in var.private_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Give at least two valid private subnet CIDRs (two availability zones)."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (resilient) instead of one shared NAT gateway (cheaper)."
  type        = bool
  default     = false
}

variable "admin_ssh_cidrs" {
  description = "CIDRs allowed to SSH to the Nginx host (the bastion). Empty: no SSH at all, use AWS Systems Manager."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_ssh_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_ssh_cidrs must be valid CIDRs and never 0.0.0.0/0."
  }
}

variable "alert_email_addresses" {
  description = "E-mail addresses subscribed to the alerts topic; each must confirm the e-mail SNS sends it. Empty: alerts are still published to the topic (output alert_topic_arn) and shown in Grafana."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alert_email_addresses : can(regex("^[^@ ]+@[^@ ]+[.][^@ ]+$", a))])
    error_message = "alert_email_addresses must be e-mail addresses."
  }
}

variable "key_name" {
  description = "Name of the EC2 key pair created by Terraform."
  type        = string
  default     = "mykey"
}

variable "private_key_path" {
  description = "Where the generated private key is written (mode 0400); it is never printed."
  type        = string
  default     = "mykey.pem"
}

variable "instance_types" {
  description = "EC2 instance type per role."
  type = object({
    nginx      = string
    ui         = string
    api        = string
    monitoring = string
    training   = string
  })
  default = {
    nginx      = "t3.small"
    ui         = "t3.small"
    api        = "c6i.xlarge"
    monitoring = "t3.medium"
    training   = "p3.2xlarge"
  }
}

variable "api_instance_count" {
  description = "Number of API hosts; the UI and Nginx spread requests over all of them. Changing it re-creates the Nginx, UI and monitoring hosts, whose user_data lists the API hosts: the site is down while the new Nginx host boots."
  type        = number
  default     = 1

  validation {
    condition     = var.api_instance_count >= 1 && var.api_instance_count <= 8 && floor(var.api_instance_count) == var.api_instance_count
    error_message = "api_instance_count must be a whole number from 1 to 8."
  }
}

variable "enable_training_instance" {
  description = "Create the GPU training host (it trains at boot, uploads the model to S3, and can be stopped afterwards)."
  type        = bool
  default     = true
}

variable "use_elasticache" {
  description = "Use an ElastiCache replication group (auth token, TLS) instead of Redis on the API host."
  type        = bool
  default     = false
}

variable "elasticache_node_type" {
  description = "Node type of the ElastiCache replication group."
  type        = string
  default     = "cache.t4g.small"
}

variable "detailed_monitoring" {
  description = "Enable EC2 detailed (1-minute) CloudWatch monitoring."
  type        = bool
  default     = false
}

variable "root_volume_size_gb" {
  description = "Root volume size (GiB) of the non-GPU hosts; the training host gets 100 GiB."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size_gb >= 20 && var.root_volume_size_gb <= 500
    error_message = "root_volume_size_gb must be between 20 and 500."
  }
}

variable "redis_volume_size_gb" {
  description = "Size (GiB) of the EBS volume that holds Redis's data on the API host (not used with ElastiCache)."
  type        = number
  default     = 20

  validation {
    condition     = var.redis_volume_size_gb >= 1 && var.redis_volume_size_gb <= 1000
    error_message = "redis_volume_size_gb must be between 1 and 1000."
  }
}

variable "prometheus_volume_size_gb" {
  description = "Size (GiB) of the EBS volume that holds Prometheus's metrics on the monitoring host (15 days kept)."
  type        = number
  default     = 50

  validation {
    condition     = var.prometheus_volume_size_gb >= 5 && var.prometheus_volume_size_gb <= 2000
    error_message = "prometheus_volume_size_gb must be between 5 and 2000."
  }
}

variable "data_snapshot_retain_count" {
  description = "Daily snapshots of each data volume (Redis, Prometheus) to keep (Data Lifecycle Manager deletes older ones)."
  type        = number
  default     = 14

  validation {
    condition     = var.data_snapshot_retain_count >= 1 && var.data_snapshot_retain_count <= 1000 && floor(var.data_snapshot_retain_count) == var.data_snapshot_retain_count
    error_message = "data_snapshot_retain_count must be a whole number from 1 to 1000."
  }
}

variable "data_snapshot_time_utc" {
  description = "Time of day (UTC, HH:MM) at which the daily snapshots of the data volumes start."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.data_snapshot_time_utc))
    error_message = "data_snapshot_time_utc must be a time of day such as 03:00."
  }
}

variable "redis_restore_snapshot_id" {
  description = "Restore: a snapshot of the Redis data volume to create the volume from (empty: a new, blank volume). Changing it replaces the volume and the Redis host."
  type        = string
  default     = ""

  validation {
    condition     = var.redis_restore_snapshot_id == "" || can(regex("^snap-[0-9a-f]{8,17}$", var.redis_restore_snapshot_id))
    error_message = "redis_restore_snapshot_id must be empty or a snapshot id such as snap-0123456789abcdef0."
  }
}

variable "repo_url" {
  description = "Git URL of this repository, cloned by every host's user_data."
  type        = string
  default     = "https://github.com/example/pneumonia-platform.git"

  validation {
    condition     = can(regex("^(https://|git@)", var.repo_url))
    error_message = "repo_url must be an https:// or git@ URL."
  }
}

variable "repo_branch" {
  description = "Branch or tag checked out on every host."
  type        = string
  default     = "main"
}

variable "training_args" {
  description = "Options of python -m model.cnn added to both members of the shipped recipe (scripts/train_model.sh) on the training host; ImageNet weights are the default on AWS."
  type        = string
  default     = "--weights imagenet"

  validation {
    condition     = can(regex("^(--[a-z][-a-z0-9]*( [^ ;&|`$\"'\\\\]+)*( |$))*$", var.training_args))
    error_message = "training_args must be model.cnn options (--name [value] ...), without shell metacharacters."
  }
}

variable "result_ttl_days" {
  description = "How many days prediction results are kept in Redis."
  type        = number
  default     = 30

  validation {
    condition     = var.result_ttl_days >= 1 && var.result_ttl_days <= 3650
    error_message = "result_ttl_days must be between 1 and 3650."
  }
}

variable "max_upload_mb" {
  description = "Upload limit in MB, applied by Nginx, the UI and the API alike."
  type        = number
  default     = 20

  validation {
    condition     = var.max_upload_mb >= 1 && var.max_upload_mb <= 100
    error_message = "max_upload_mb must be between 1 and 100."
  }
}
