#!/usr/bin/env bash
# Fuzzes the running quick start with its own OpenAPI document (schemathesis, from PyPI into the git-ignored .tools/
# virtual environment): every operation, no 5xx, every answer's status, content type and body as documented.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .tools/bin/python ] || python3 -m venv .tools
[ -x .tools/bin/schemathesis ] || .tools/bin/pip install --quiet schemathesis==4.32.5 2>/dev/null

port="${FUZZ_PORT:-3310}"
data="$(mktemp -d)"
log="$data/service.log"
# The quick start, on ports of its own (its own Temporal dev server, sandbox provider and embedded database).
# Authorizations the fuzzer starts end after 3 s, so its long polls (`?wait=` up to 60 s) end soon too.
DATA_DIR="$data" PORT="$port" TEMPORAL_PORT="${FUZZ_TEMPORAL_PORT:-7310}" TEMPORAL_UI_PORT="${FUZZ_UI_PORT:-8310}" \
  SANDBOX_PORT="${FUZZ_SANDBOX_PORT:-3410}" RATE_LIMIT_IP_PER_MINUTE=1000000 RATE_LIMIT_CALLBACK_IP_PER_MINUTE=1000000 \
  RATE_LIMIT_AGENT_PER_MINUTE=1000000 LOG_LEVEL=warn AUTHORIZATION_TIMEOUT_SECONDS=3 \
  setsid node --import tsx scripts/start.ts >"$log" 2>&1 &
service=$!
trap 'kill -INT -- -$service 2>/dev/null || true; wait $service 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://localhost:$port/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fs "http://localhost:$port/readyz" >/dev/null || { cat "$log"; exit 1; }

.tools/bin/schemathesis run "http://localhost:$port/openapi.json" \
  -H 'X-Agent-Id: fuzz-agent' -H 'X-User-Id: fuzz-user' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${FUZZ_EXAMPLES:-20}" --workers 1 --request-timeout 75 --seed "${FUZZ_SEED:-1}" \
  --suppress-health-check all "$@" 2>&1 |
  # schemathesis closes with a pytest-style banner ("=== 3 warnings in 18s ===") that counts no test; say what it ran.
  awk '{ gsub(/\033\[[0-9;]*m/, "") }
       /^=+ .* in [0-9.]+s =+$/ { next }
       { print }
       /^ +[0-9]+ generated, / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p = $i; if ($(i+1) ~ /^failed/) f = $i } }
       END { if (p != "") printf "fuzz: %d passed, %d failed\n", p, f }'
