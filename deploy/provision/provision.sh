#!/usr/bin/env bash
# Provision one host of the pneumonia platform for its role (nginx, ui, api, monitoring, training).
# Run by the AWS user_data after it wrote /etc/pneumonia/host.env and cloned the repository to
# /opt/pneumonia. Every config file comes from deploy/ in this repository, as for `make up`.
set -euo pipefail

REPO=${REPO:-/opt/pneumonia}
SETTINGS=${SETTINGS:-/etc/pneumonia/host.env}
# shellcheck source=/dev/null
source "$SETTINGS"
export DEBIAN_FRONTEND=noninteractive
VENV=$REPO/.venv

# Rehearsal switches (`make rehearsal` sets them; on AWS none is set). Each marks the one thing
# that needs AWS or the internet; everything else runs exactly as on an EC2 host.
#   PROVISION_OFFLINE=1        packages and the virtual environment are already installed:
#                              no apt-get/snap/pip, no Grafana repository, no training run
#   PROVISION_SECRETS_DIR=DIR  secrets are the files DIR/<name> instead of SSM parameters
#   PROVISION_MODEL_DIR=DIR    the API's model comes from DIR instead of S3 (model_sync.sh)
# (The rehearsal also puts a stand-in `systemctl` first on PATH: its hosts run no systemd.)
OFFLINE=${PROVISION_OFFLINE:-}

log() { echo "[provision $ROLE] $*"; }

secret() {  # secret NAME -> value from SSM Parameter Store (SecureString)
  if [ -n "${PROVISION_SECRETS_DIR:-}" ]; then
    cat "$PROVISION_SECRETS_DIR/$1"
    return
  fi
  aws ssm get-parameter --region "$AWS_REGION" --with-decryption --name "$SSM_PREFIX/$1" \
    --query Parameter.Value --output text
}

optional_secret() {  # optional_secret NAME -> a parameter the operator may have set, or nothing
  if [ -n "${PROVISION_SECRETS_DIR:-}" ] && [ ! -f "$PROVISION_SECRETS_DIR/$1" ]; then
    return
  fi
  secret "$1" 2>/dev/null || log "no SSM parameter $SSM_PREFIX/$1" >&2
}

# The address lists of terraform/host_lists.tf (SSM host_lists: one NAME=value line each).
HOST_LISTS="UI_SERVERS API_SERVERS NODE_TARGETS UI_TARGETS API_TARGETS REDIS_TARGETS NGINX_TARGETS EDGE_TARGETS"

host_lists() {  # host_lists: set those variables from SSM; only their names, only address characters
  local lists name value
  lists=$(secret host_lists)
  while IFS='=' read -r name value; do
    [[ " $HOST_LISTS " == *" $name "* ]] || continue
    if [[ ! $value =~ ^[0-9a-z.:=\ -]*$ ]]; then
      log "host_lists: refused $name=$value" >&2
      return 1
    fi
    printf -v "$name" '%s' "$value"
  done <<<"$lists"
}

packages() {  # packages NAME...: apt-get install (already installed when offline)
  [ -n "$OFFLINE" ] || apt-get install -y -qq "$@"
}

render() {  # render TEMPLATE DEST VAR...: envsubst with only the named variables
  local template=$1 dest=$2 vars=""
  shift 2
  for v in "$@"; do vars="$vars \${$v}"; done
  install -d "$(dirname "$dest")"
  envsubst "$vars" <"$template" >"$dest"
}

data_volume() {  # data_volume DIR OWNER UNIT: this host's EBS data volume (DATA_VOLUME_ID) at DIR, before UNIT
  if [ -z "${DATA_VOLUME_ID:-}" ]; then
    return 0
  fi
  systemctl stop "$3" 2>/dev/null || true # a package's service started by its installation
  # terraform/data_volumes.tf; the device is named by the volume's id on an NVMe (Nitro) host
  "$REPO/deploy/provision/data_volume.sh" "$1" \
    "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${DATA_VOLUME_ID/-/}" /dev/xvdf /dev/sdf
  chown "$2:$2" "$1"
  chmod 0750 "$1"
  install -d "/etc/systemd/system/$3.service.d"
  printf '[Unit]\nRequiresMountsFor=%s\n' "$1" >"/etc/systemd/system/$3.service.d/data-volume.conf"
  systemctl daemon-reload
}

servers() {  # servers "ip:port ip:port" -> "server ip:port; server ip:port;"
  local out=""
  for s in $1; do out="$out server $s;"; done
  echo "$out"
}

common() {
  log "base packages"
  if [ -z "$OFFLINE" ]; then
    apt-get update -qq
    packages gettext-base curl prometheus-node-exporter python3-venv python3-pip
    command -v aws >/dev/null || snap install aws-cli --classic
  fi
  systemctl enable --now prometheus-node-exporter
  id pneumonia >/dev/null 2>&1 || useradd --system --home-dir "$REPO" --shell /usr/sbin/nologin pneumonia
}

python_env() {
  log "python virtual environment"
  [ -z "$OFFLINE" ] || return 0
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REPO/requirements.txt"
  chown -R pneumonia:pneumonia "$REPO"
}

unit() {  # unit NAME: install deploy/systemd/NAME.service and start it
  install -m 0644 "$REPO/deploy/systemd/$1.service" "/etc/systemd/system/$1.service"
  systemctl daemon-reload
  systemctl enable --now "$1"
}

host_lists_applied() {  # when the host lists were last applied, for node_exporter (alert HostListsStale)
  local dir=/var/lib/prometheus/node-exporter # the textfile collector's folder (Debian's default; on the
  install -d -m 0755 "$dir"                   # monitoring host Prometheus's data volume is mounted over it)
  printf '%s\n' "# HELP pneumonia_host_lists_applied_timestamp_seconds When provision.sh last applied the SSM host lists." \
    "# TYPE pneumonia_host_lists_applied_timestamp_seconds gauge" \
    "pneumonia_host_lists_applied_timestamp_seconds $(date +%s)" >"$dir/pneumonia_host_lists.prom.tmp"
  chmod 0644 "$dir/pneumonia_host_lists.prom.tmp" # node_exporter runs as prometheus; role_ui sets umask 077
  mv "$dir/pneumonia_host_lists.prom.tmp" "$dir/pneumonia_host_lists.prom"
}

host_lists_timer() {  # re-read the host lists every minute and apply a change (refresh_<role> below)
  install -m 0644 "$REPO/deploy/systemd/pneumonia-host-lists.service" "$REPO/deploy/systemd/pneumonia-host-lists.timer" \
    /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now pneumonia-host-lists.timer
  host_lists_applied
}

nginx_site() {  # render Nginx's site from the host lists (and the settings)
  # HTTPS on 443 (TLS 1.2+); port 80 only redirects. HSTS takes effect once the certificate is CA-issued.
  export NGINX_LISTEN="443 ssl" STATUS_LISTEN=127.0.0.1:8081 RATE_LIMIT=20r/s RATE_BURST=40 CLIENT_TIMEOUT=15s
  export TLS_SETTINGS="ssl_certificate /etc/nginx/tls/pneumonia.crt; ssl_certificate_key /etc/nginx/tls/pneumonia.key; \
ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:pneumonia_tls:10m; ssl_session_tickets off; \
add_header Strict-Transport-Security \"max-age=31536000\" always;"
  # shellcheck disable=SC2016  # \$host and \$request_uri are Nginx's variables
  export HTTP_REDIRECT='server { listen 80 default_server; server_name _; server_tokens off; location / { return 301 https://$host$request_uri; } }'
  UI_SERVERS_RENDERED=$(servers "$UI_SERVERS")
  API_SERVERS_RENDERED=$(servers "$API_SERVERS")
  export UI_SERVERS=$UI_SERVERS_RENDERED API_SERVERS=$API_SERVERS_RENDERED
  GRAFANA_LOCATION="location /grafana/ { proxy_set_header Host \$host; proxy_pass http://$MONITORING_IP:3000; }"
  export GRAFANA_LOCATION MAX_UPLOAD_MB EDGE_LOG=/var/log/nginx/edge.log
  render "$REPO/deploy/nginx/pneumonia.conf.tmpl" /etc/nginx/conf.d/pneumonia.conf \
    NGINX_LISTEN UI_SERVERS API_SERVERS MAX_UPLOAD_MB RATE_LIMIT RATE_BURST STATUS_LISTEN GRAFANA_LOCATION \
    CLIENT_TIMEOUT TLS_SETTINGS HTTP_REDIRECT EDGE_LOG
}

role_nginx() {
  packages nginx openssl prometheus-nginx-exporter mtail
  # the operator's certificate from SSM (README, HTTPS) when set, so that a replaced host serves it too
  local tls
  tls=$(mktemp -d)
  optional_secret tls/certificate >"$tls/crt"
  optional_secret tls/private_key >"$tls/key"
  # shellcheck disable=SC2046,SC2086  # PUBLIC_IP (may be empty) and hostname -I: lists of addresses
  "$REPO/deploy/provision/tls_certificate.sh" /etc/nginx/tls "$tls/crt" "$tls/key" ${PUBLIC_IP:-} $(hostname -I)
  rm -rf "$tls"
  host_lists
  nginx_site
  # made here, as logrotate makes it, so that mtail finds it before Nginx's reload writes to it
  [ -e "$EDGE_LOG" ] || install -m 0640 -o www-data -g adm /dev/null "$EDGE_LOG"
  rm -f /etc/nginx/sites-enabled/default
  nginx -t
  systemctl enable --now nginx && systemctl reload nginx
  echo 'ARGS="-web.listen-address=:9113 -nginx.scrape-uri=http://127.0.0.1:8081/stub_status"' \
    >/etc/default/prometheus-nginx-exporter
  systemctl restart prometheus-nginx-exporter
  # mtail (as the mtail user, in group adm) turns the edge log into metrics on :3903.
  install -m 0644 "$REPO/deploy/mtail/nginx_edge.mtail" /etc/mtail/
  printf 'LOGS=%s\nHOST=0.0.0.0\nPORT=3903\n' "$EDGE_LOG" >/etc/default/mtail
  systemctl enable mtail && systemctl restart mtail
  host_lists_timer
}

ui_api_urls() {  # the API hosts of the host lists as the UI's API_URLS
  for s in $API_SERVERS; do printf 'http://%s,' "$s"; done | sed 's/,$//'
}

ui_env() {  # write the UI's settings, its API addresses from the host lists
  umask 077
  cat >/etc/pneumonia/ui.env <<ENV
API_URLS=$(ui_api_urls)
API_TOKEN=$(secret api_token)
FLASK_SECRET_KEY=$(secret flask_secret_key)
UI_BIND=0.0.0.0:5001
MAX_UPLOAD_BYTES=$((MAX_UPLOAD_MB * 1048576))
PROMETHEUS_MULTIPROC_DIR=/run/pneumonia-ui/metrics
ENV
}

role_ui() {
  python_env
  host_lists
  ui_env
  # The admin CLI with the UI's settings: `sudo pneumonia-admin users create alice --role clinician`.
  cat >/usr/local/bin/pneumonia-admin <<SCRIPT
#!/bin/sh
set -a
. /etc/pneumonia/ui.env
cd $REPO && exec $VENV/bin/flask --app pneumonia_web "\$@"
SCRIPT
  chmod 0750 /usr/local/bin/pneumonia-admin
  unit pneumonia-ui
  host_lists_timer
}

role_api() {
  python_env
  umask 077
  local redis_password
  redis_password=$(secret redis_password)
  if [ "$USE_ELASTICACHE" != "true" ]; then
    packages redis-server
    systemctl disable --now redis-server || true
    data_volume /var/lib/redis redis pneumonia-redis
    REDIS_BIND="127.0.0.1 $(hostname -I | awk '{print $1}')"
    export REDIS_BIND REDIS_PORT=6379 REDIS_DIR=/var/lib/redis
    export REDIS_PASSWORD=$redis_password
    render "$REPO/deploy/redis/redis.conf.tmpl" /etc/pneumonia/redis.conf REDIS_BIND REDIS_PORT REDIS_PASSWORD REDIS_DIR
    chown redis:redis /etc/pneumonia/redis.conf
    unit pneumonia-redis
  fi
  packages prometheus-redis-exporter
  cat >/etc/default/prometheus-redis-exporter <<ENV
ARGS="-web.listen-address=:9121 -redis.addr=${REDIS_URL%/0}"
REDIS_PASSWORD=$redis_password
ENV
  systemctl restart prometheus-redis-exporter
  cat >/etc/pneumonia/api.env <<ENV
MODEL_PATH=/var/lib/pneumonia/models/best_model.keras
REDIS_URL=$REDIS_URL
REDIS_PASSWORD=$redis_password
API_TOKEN=$(secret api_token)
API_BIND=0.0.0.0:5000
RESULT_TTL_SECONDS=$RESULT_TTL_SECONDS
MAX_UPLOAD_BYTES=$((MAX_UPLOAD_MB * 1048576))
MODEL_BUCKET=$MODEL_BUCKET
PROMETHEUS_MULTIPROC_DIR=/run/pneumonia-api/metrics
ENV
  install -d -o pneumonia -g pneumonia /var/lib/pneumonia/models
  install -m 0755 "$REPO/deploy/provision/model_sync.sh" /usr/local/bin/pneumonia-model-sync
  /usr/local/bin/pneumonia-model-sync
  unit pneumonia-api
  # `systemctl start pneumonia-model-reload` (e.g. through `aws ssm send-command`) pulls the latest model.
  install -m 0644 "$REPO/deploy/systemd/pneumonia-model-reload.service" /etc/systemd/system/
  systemctl daemon-reload
}

scrape_targets() {  # Prometheus's file_sd targets from the host lists (it re-reads them by itself)
  "$REPO/deploy/provision/write_targets.py" /etc/prometheus/targets \
    "prometheus=127.0.0.1:9090=monitoring" "node=$NODE_TARGETS" "api=$API_TARGETS" "ui=$UI_TARGETS" \
    "redis=$REDIS_TARGETS" "nginx=$NGINX_TARGETS" "edge=$EDGE_TARGETS" "alertmanager=127.0.0.1:9093=monitoring"
}

alertmanager() {  # beside Prometheus: every alert to the SNS topic (terraform/alerts.tf), on loopback only
  "$REPO/deploy/provision/write_alertmanager.py" /etc/prometheus/alertmanager.yml --sns-topic "$ALERT_TOPIC_ARN" \
    --region "$AWS_REGION" ${PUBLIC_IP:+--link "https://$PUBLIC_IP/grafana/"}
  chgrp prometheus /etc/prometheus/alertmanager.yml
  amtool check-config /etc/prometheus/alertmanager.yml
  # no cluster port (one Alertmanager); silences and the notification log on Prometheus's data volume
  install -d -o prometheus -g prometheus /var/lib/prometheus/alertmanager
  echo 'ARGS="--web.listen-address=127.0.0.1:9093 --cluster.listen-address= --storage.path=/var/lib/prometheus/alertmanager"' \
    >/etc/default/prometheus-alertmanager
  systemctl enable prometheus-alertmanager && systemctl restart prometheus-alertmanager
}

role_monitoring() {
  packages prometheus prometheus-alertmanager apt-transport-https gnupg
  data_volume /var/lib/prometheus prometheus prometheus
  install -d /etc/prometheus/rules /etc/prometheus/targets
  cp "$REPO/deploy/prometheus/prometheus.yml" /etc/prometheus/prometheus.yml
  cp "$REPO"/deploy/prometheus/rules/*.yml /etc/prometheus/rules/
  host_lists
  scrape_targets
  alertmanager
  promtool check config /etc/prometheus/prometheus.yml
  # restart, not reload: reload is a SIGHUP, and one sent in the first ~50 ms, before Prometheus
  # installs its handler, kills it (and systemd counts a SIGHUP exit as clean, so no restart).
  systemctl enable prometheus && systemctl restart prometheus
  host_lists_timer
  if [ -n "$OFFLINE" ]; then
    log "offline: Grafana (from its own apt repository) is not installed"
    return
  fi
  # Grafana is not in Ubuntu's archive: its own apt repository.
  curl -fsSL https://apt.grafana.com/gpg.key | gpg --dearmor -o /usr/share/keyrings/grafana.gpg
  echo "deb [signed-by=/usr/share/keyrings/grafana.gpg] https://apt.grafana.com stable main" \
    >/etc/apt/sources.list.d/grafana.list
  apt-get update -qq && apt-get install -y -qq grafana
  cp -r "$REPO/deploy/grafana/provisioning/." /etc/grafana/provisioning/
  install -d /var/lib/grafana/dashboards && cp "$REPO"/deploy/grafana/dashboards/*.json /var/lib/grafana/dashboards/
  # Absolute links (alert notifications, shared URLs) name the public Nginx address, served as HTTPS.
  local root_url='%(protocol)s://%(domain)s/grafana/'
  [ -z "${PUBLIC_IP:-}" ] || root_url="https://$PUBLIC_IP/grafana/"
  umask 077
  cat >/etc/default/grafana-server.pneumonia <<ENV
GF_SECURITY_ADMIN_PASSWORD=$(secret grafana_admin_password)
GF_SERVER_ROOT_URL=$root_url
GF_SERVER_SERVE_FROM_SUB_PATH=true
GF_AUTH_ANONYMOUS_ENABLED=false
GF_USERS_ALLOW_SIGN_UP=false
ENV
  install -d /etc/systemd/system/grafana-server.service.d
  printf '[Service]\nEnvironmentFile=/etc/default/grafana-server.pneumonia\n' \
    >/etc/systemd/system/grafana-server.service.d/pneumonia.conf
  systemctl daemon-reload && systemctl enable --now grafana-server && systemctl restart grafana-server
}

role_training() {
  if [ -n "$OFFLINE" ]; then
    log "offline: no GPU packages, dataset download or training run"
    return
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # The GPU build of the same TensorFlow release instead of tensorflow-cpu.
  grep -v '^tensorflow-cpu' "$REPO/requirements.txt" >/tmp/requirements-gpu.txt
  "$VENV/bin/pip" install -q -r /tmp/requirements-gpu.txt "tensorflow[and-cuda]==2.21.0"
  local data=/var/lib/pneumonia/data out=/var/lib/pneumonia/output
  "$REPO/scripts/download_data.sh" "$data"
  cd "$REPO"
  # The shipped model's recipe; the official test split is reported only.
  # shellcheck disable=SC2086 # TRAINING_ARGS is a list of model.cnn options
  PY="$VENV/bin/python" EXTERNAL="$data/chest_xray/test" scripts/train_model.sh "$data/chest_xray" "$out" $TRAINING_ARGS
  for f in best_model.keras best_model.json best_model.onnx best_model.atypicality.npz; do
    [ ! -f "$out/model/$f" ] || aws s3 cp "$out/model/$f" "s3://$MODEL_BUCKET/models/latest/$f"
  done
  log "model uploaded to s3://$MODEL_BUCKET/models/latest/"
}

# `provision.sh refresh` (pneumonia-host-lists.timer, every minute): apply a change of the host lists.
refresh_nginx() {
  local site=/etc/nginx/conf.d/pneumonia.conf
  cp "$site" "$site.before"
  nginx_site
  if cmp -s "$site" "$site.before"; then
    rm "$site.before"
  elif nginx -t; then
    rm "$site.before"
    systemctl reload nginx
    log "upstreams now: UI $UI_SERVERS_RENDERED API $API_SERVERS_RENDERED"
  else
    mv "$site.before" "$site"
    log "host lists give an invalid Nginx site; kept the running one" >&2
    return 1
  fi
}

refresh_ui() {  # only the API_URLS line can change (no secret is read again)
  local urls
  urls="API_URLS=$(ui_api_urls)"
  grep -qxF "$urls" /etc/pneumonia/ui.env && return
  sed -i "s|^API_URLS=.*|$urls|" /etc/pneumonia/ui.env
  systemctl restart pneumonia-ui
  log "API addresses now: $API_SERVERS"
}

refresh_monitoring() {
  scrape_targets
}

if [ "${1:-}" = refresh ]; then
  host_lists
  "refresh_$ROLE"
  host_lists_applied
  exit
fi
common
"role_$ROLE"
log "done"
