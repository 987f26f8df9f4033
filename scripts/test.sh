#!/usr/bin/env bash
# Runs Herald's whole test suite.
#
# Tests that need Redis read REDIS_URL. When it is unset and nothing answers on
# 127.0.0.1:6379, this script starts a throwaway redis-server on a free port (installing
# Debian's redis-server package if it is missing), exports REDIS_URL, and stops it at the end.
# Some tests start their own short-lived redis-server (to restart it mid-run), so the binary
# is made available either way and exported as REDIS_SERVER_BIN.
#
# The console's browser test needs Chromium and chromedriver (Debian's chromium and
# chromium-driver, installed when missing) and Selenium (installed by check-deploy.sh).
#
# Tests of the store on a Redis Cluster read REDIS_CLUSTER_URL. When it is unset, this script
# starts a throwaway cluster of six redis-servers (three masters, three replicas, joined with
# `redis-cli --cluster create`), exports REDIS_CLUSTER_URL, and stops it at the end.
#
# Before the tests, scripts/check-deploy.sh lints and validates deploy/ (installing
# promtool and prometheus, hadolint, kubernetes-validate and kustomize when missing).
#
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p herald-store`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# PING a Redis on host:port with bash's /dev/tcp; succeeds when it answers +PONG.
redis_answers() {
  (
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || exit 1
    [[ $reply == +PONG* ]]
  ) 2>/dev/null
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  log "redis-server or redis-cli not found; installing Debian's redis-server package"
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q redis-server >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q redis-server >/dev/null
  }
}

# Stops the redis-servers whose pid files are under $1, then removes it.
stop_servers() {
  local pidfile pid
  for pidfile in "$1"/redis*.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
  rm -rf "$1"
}

tmpdir=""
clusterdir=""
cleanup() {
  local rc=$?
  if [[ -n $tmpdir ]]; then stop_servers "$tmpdir"; fi
  if [[ -n $clusterdir ]]; then stop_servers "$clusterdir"; fi
  exit "$rc"
}
trap cleanup EXIT

# A free port whose cluster bus port (+10000) is free too, from $1 upwards.
free_port_from() {
  local p
  for p in $(seq "$1" $(($1 + 500))); do
    if port_is_free "$p" && port_is_free $((p + 10000)); then echo "$p"; return 0; fi
  done
  return 1
}

# Six redis-servers in cluster mode in $clusterdir, joined as three masters and three
# replicas; sets REDIS_CLUSTER_URL to their list.
start_cluster() {
  clusterdir=$(mktemp -d)
  local ports=() p=17000 urls=()
  for _ in 1 2 3 4 5 6; do
    p=$(free_port_from "$p") || { log "no free ports for a throwaway Redis Cluster"; exit 1; }
    ports+=("$p")
    mkdir -p "$clusterdir/$p"
    "$REDIS_SERVER_BIN" --port "$p" --bind 127.0.0.1 --save "" \
      --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --dir "$clusterdir/$p" --pidfile "$clusterdir/redis-$p.pid" \
      --logfile "$clusterdir/$p/redis.log" --daemonize yes
    p=$((p + 1))
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 50); do
      redis_answers 127.0.0.1 "$p" && break
      sleep 0.1
    done
    redis_answers 127.0.0.1 "$p" || { log "cluster node $p did not start"; exit 1; }
    urls+=("redis://127.0.0.1:$p")
  done
  local nodes=()
  for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  "$REDIS_CLI_BIN" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
    >"$clusterdir/create.log" 2>&1 || { log "redis-cli --cluster create failed"; cat "$clusterdir/create.log" >&2; exit 1; }
  local ok=""
  for _ in $(seq 300); do
    if "$REDIS_CLI_BIN" -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
      ok=1; break
    fi
    sleep 0.1
  done
  [[ -n $ok ]] || { log "the throwaway Redis Cluster never reported cluster_state:ok"; exit 1; }
  REDIS_CLUSTER_URL=$(IFS=,; echo "${urls[*]}")
  export REDIS_CLUSTER_URL
  log "started a throwaway Redis Cluster on ports ${ports[*]}"
}

# Headless Chromium and its driver, for the console's browser test
# (crates/herald/tests/console.rs); Selenium comes with check-deploy.sh's venv.
ensure_chromium() {
  if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then return 0; fi
  log "chromium or chromedriver not found; installing Debian's chromium and chromium-driver"
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
  }
}

ensure_redis_server
ensure_chromium
export REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-$(command -v redis-server)}
export REDIS_CLI_BIN=${REDIS_CLI_BIN:-$(command -v redis-cli)}

if [[ -z ${REDIS_URL:-} ]]; then
  if redis_answers 127.0.0.1 6379; then
    export REDIS_URL=redis://127.0.0.1:6379
  else
    tmpdir=$(mktemp -d)
    port=""
    for p in $(seq 16379 16479); do
      if port_is_free "$p"; then port=$p; break; fi
    done
    [[ -n $port ]] || { log "no free port for a throwaway redis-server"; exit 1; }
    "$REDIS_SERVER_BIN" --port "$port" --bind 127.0.0.1 --save "" \
      --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
      --dir "$tmpdir" --pidfile "$tmpdir/redis.pid" --logfile "$tmpdir/redis.log" \
      --daemonize yes
    for _ in $(seq 50); do
      redis_answers 127.0.0.1 "$port" && break
      sleep 0.1
    done
    redis_answers 127.0.0.1 "$port" || { log "throwaway redis-server did not start"; cat "$tmpdir/redis.log" >&2; exit 1; }
    export REDIS_URL=redis://127.0.0.1:$port
    log "started a throwaway redis-server on port $port"
  fi
fi
log "REDIS_URL=$REDIS_URL"
if [[ -z ${REDIS_CLUSTER_URL:-} ]]; then start_cluster; fi
log "REDIS_CLUSTER_URL=$REDIS_CLUSTER_URL"

# deploy/: hadolint, promtool (config, rules, rule unit tests), kustomize and
# kubernetes-validate; each tool is installed when missing. Prometheus itself is what
# crates/herald/tests/prometheus.rs scrapes a real campaign with.
scripts/check-deploy.sh
export PROMETHEUS_BIN=${PROMETHEUS_BIN:-$(command -v prometheus)}
# check-deploy.sh's venv holds the OpenAPI validator and selenium (crates/herald/tests).
tools_venv=${HERALD_DEPLOY_TOOLS:-$PWD/target/deploy-tools}/venv
export OPENAPI_SPEC_VALIDATOR=${OPENAPI_SPEC_VALIDATOR:-$tools_venv/bin/openapi-spec-validator}
export HERALD_TEST_PYTHON=${HERALD_TEST_PYTHON:-$tools_venv/bin/python}

# A test that hangs fails the run here, with a clear message, long before CI's own limit.
rc=0
timeout --signal=KILL 45m cargo test --workspace --locked "$@" || rc=$?
if [[ $rc -eq 137 ]]; then log "the test suite ran over 45 minutes: a test hangs"; fi
exit "$rc"
