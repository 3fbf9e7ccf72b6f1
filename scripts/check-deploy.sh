#!/usr/bin/env bash
# Checks deploy/: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, from PyPI into the
# git-ignored .tools/ virtual environment), and the Prometheus alert rules with promtool (Debian's prometheus
# package, installed when missing and possible). test/unit/deploy.test.ts checks what these tools cannot: that
# every expression names an exported metric and every setting is one the service reads.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .tools/bin/python ] || python3 -m venv .tools
[ -x .tools/bin/kubernetes-validate ] || .tools/bin/pip install --quiet kubernetes-validate==1.37.0 2>/dev/null
.tools/bin/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
echo "kubernetes-validate: deploy/kubernetes ok"

if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || true
fi
if command -v promtool >/dev/null 2>&1; then
  promtool check rules deploy/prometheus/alerts.yaml
else
  # Checked where promtool can be installed; the unit test still checks every rule's metrics.
  echo "promtool is not installed here: alert rules not checked (install Debian's prometheus package)" >&2
fi
