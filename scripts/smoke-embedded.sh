#!/usr/bin/env bash
# Embedded-mode smoke test of `make run`: a fresh var/, the platform up, a login, a customer, an event on the timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${SMOKE_PORT:-18000}
work=$(mktemp -d)
log="$work/run.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

CUSTOMER_VAR_DIR="$work/var" AFTERCARE_VAR_DIR="$work/var" PORT=$port setsid make --no-print-directory run >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 1; done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "embedded platform did not come up"; cat "$log"; exit 1; }
grep -q "Log in with" "$log" || { echo "no login instructions printed"; cat "$log"; exit 1; }

token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d '{"tenant":"demo","employee_no":"admin","password":"aftercare-demo"}' | "${PY:-.venv/bin/python}" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
store=$(curl -fsS "http://127.0.0.1:$port/api/v1/stores" -H "Authorization: Bearer $token" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
customer=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/customers" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d "{\"store_id\":\"$store\",\"name\":\"Smoke Test\",\"phones\":[{\"number\":\"13900000000\"}]}" \
  | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 20); do
  n=$(curl -fsS "http://127.0.0.1:$port/api/v1/customers/$customer/timeline" -H "Authorization: Bearer $token" \
      | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
  [ "$n" -ge 1 ] && break; sleep 0.5
done
[ "$n" -ge 1 ] || { echo "the customer's timeline never received its created event"; cat "$log"; exit 1; }
curl -fsS "http://127.0.0.1:$port/docs" | grep -q swagger || { echo "/docs missing"; exit 1; }

# survey_svc: the demo group's default surveys, links pointing at this server, the public answer page (HTML)
for _ in $(seq 1 20); do
  n=$(curl -fsS "http://127.0.0.1:$port/api/v1/surveys/templates" -H "Authorization: Bearer $token" \
      | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$n" -ge 1 ] && break; sleep 0.5
done
[ "$n" -ge 1 ] || { echo "survey_svc never received the demo group's default surveys"; cat "$log"; exit 1; }
grep -qF "http://127.0.0.1:$port/s/<token>" "$log" || { echo "survey links do not point at this server"; cat "$log"; exit 1; }
code=$(curl -s -o "$work/page.html" -w '%{http_code}' "http://127.0.0.1:$port/s/not-a-real-token")
[ "$code" = 404 ] && grep -q '<html' "$work/page.html" || { echo "the survey answer page is not served ($code)"; exit 1; }
echo "embedded smoke test: ok (platform up, login, customer created, event delivered to the timeline, surveys served)"
