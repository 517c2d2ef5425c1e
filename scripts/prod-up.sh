#!/usr/bin/env bash
# Production mode without Docker, on this machine: the local Postgres and RabbitMQ, each service as its own
# api (uvicorn) and worker processes, the nginx gateway in front. Everything it makes lives under
# $AFTERCARE_PROD_DIR (var/prod): pid files (run/), logs (log/), generated secrets (secrets/, keys/), nginx (gateway/).
# scripts/prod-down.sh stops it. Running it again restarts the processes and keeps data, keys and passwords.
#
# Environment (all optional):
#   PORT                          gateway port (8080)
#   AFTERCARE_PROD_DIR            state directory (var/prod)
#   AFTERCARE_PROD_DB             database, created if absent (aftercare)
#   PGHOST PGPORT PGUSER PGPASSWORD   how psql reaches Postgres as a superuser (127.0.0.1 5432 postgres)
#   AFTERCARE_AMQP_URL            broker, vhost included (amqp://guest:guest@127.0.0.1:5672/)
#   AFTERCARE_PROD_API_WORKERS    uvicorn workers per api process (2)
#   AFTERCARE_PROD_TENANT         tenant code bootstrapped with an admin (demo)
#   AFTERCARE_PROD_ADMIN_PASSWORD its admin's password (generated once, kept in secrets/admin-password)
#   <SERVICE>_DB_PASSWORD         a service role's password (generated once, kept in secrets/<service>.db-password)
#   NOTIFY_PII_HASH_KEY           notify_svc's key for counting caps per person (generated once, secrets/)
#   SURVEY_TOKEN_KEY              survey_svc's key of the answer-link tokens (generated once, secrets/)
#   SURVEY_PUBLIC_BASE_URL        where customers open answer links (http://127.0.0.1:$PORT, the gateway)
#   AFTERCARE_PROD_RATE AFTERCARE_PROD_BURST   the gateway's per-client limit (the committed config's: 50r/s, 100)
#   AFTERCARE_PROD_PUBLIC_RATE AFTERCARE_PROD_PUBLIC_BURST   its per-address limit of survey answers (5r/s, 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)

PORT=${PORT:-8080}
PROD_DIR=$(mkdir -p "${AFTERCARE_PROD_DIR:-$ROOT/var/prod}" && cd "${AFTERCARE_PROD_DIR:-$ROOT/var/prod}" && pwd)
DB=${AFTERCARE_PROD_DB:-aftercare}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
AMQP_URL=${AFTERCARE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
API_WORKERS=${AFTERCARE_PROD_API_WORKERS:-2}
TENANT=${AFTERCARE_PROD_TENANT:-demo}
SERVICES=$("$PY" -c 'from aftercare.services import SERVICE_MODULES; print(" ".join(SERVICE_MODULES))')
RUN=$PROD_DIR/run LOG=$PROD_DIR/log SECRETS=$PROD_DIR/secrets KEYS=$PROD_DIR/keys
export AFTERCARE_PROD_DIR=$PROD_DIR  # every process we start carries it: prod-down.sh checks it before killing a pid

step() { if [ -t 1 ]; then printf '\033[1m==> %s\033[0m\n' "$*"; else printf '==> %s\n' "$*"; fi; }
die() { echo "prod-up: $*" >&2; "$ROOT/scripts/prod-down.sh" >/dev/null 2>&1 || true; exit 1; }
secret() {  # secret FILE [VALUE]: the value given, else the one kept in FILE, else a new random one (kept)
  if [ -n "${2:-}" ]; then (umask 077; printf '%s' "$2" >"$1"); fi
  [ -s "$1" ] || (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(24), end="")' >"$1")
  cat "$1"
}
wait_ok() {  # wait_ok URL SECONDS [PIDFILE LOGFILE]
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$(cat "$3")" 2>/dev/null; then
      tail -n 40 "$4" >&2; return 1
    fi
    sleep 0.2
  done
  return 1
}

command -v psql >/dev/null || { echo "prod-up: psql is required (postgresql-client)" >&2; exit 1; }
command -v curl >/dev/null || { echo "prod-up: curl is required" >&2; exit 1; }
if compgen -G "$RUN/*.pid" >/dev/null || [ -f "$PROD_DIR/gateway/gateway.pid" ]; then
  step "stopping the previous run"
  "$ROOT/scripts/prod-down.sh"
fi
mkdir -p "$RUN" "$LOG" "$SECRETS"
chmod 700 "$SECRETS"

step "database $DB on $PGHOST:$PGPORT, one role and schema per service"
psql -X -q -v ON_ERROR_STOP=1 -v db="$DB" -d postgres <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
for svc in $SERVICES; do
  var=${svc^^}_DB_PASSWORD
  export "$var=$(secret "$SECRETS/$svc.db-password" "${!var:-}")"
done
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$ROOT/deploy/postgres/roles.sql"

step "token keys"
"$PY" -m aftercare.keys --private-dir "$KEYS"
# notify_svc's key for counting caps per person (generated once, kept like the passwords).
NOTIFY_PII_HASH_KEY=$(secret "$SECRETS/notify-pii-hash-key" "${NOTIFY_PII_HASH_KEY:-}")
# survey_svc's key of the answer-link tokens: kept, since a new one would void every link already sent.
SURVEY_TOKEN_KEY=$(secret "$SECRETS/survey-token-key" "${SURVEY_TOKEN_KEY:-}")
SURVEY_PUBLIC_BASE_URL=${SURVEY_PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}

# What every process of one service gets: production settings, its own role, the broker, the keys.
service_env() {  # service_env SVC -> NAME=VALUE lines for `env`
  local svc=$1 prefix=${1%_svc} var=${1^^}_DB_PASSWORD
  prefix=${prefix^^}_
  echo "AFTERCARE_ENVIRONMENT=prod"
  echo "AFTERCARE_AMQP_URL=$AMQP_URL"
  echo "AFTERCARE_JWT_PUBLIC_KEY=$KEYS/jwt_public.pem"
  echo "AFTERCARE_VAR_DIR=$PROD_DIR/var"
  echo "${prefix}DATABASE_URL=postgresql+asyncpg://$svc:${!var}@$PGHOST:$PGPORT/$DB"
  if [ "$svc" = customer_svc ]; then echo "CUSTOMER_JWT_PRIVATE_KEY=$KEYS/jwt_private.pem"; fi
  if [ "$svc" = notify_svc ]; then echo "NOTIFY_PII_HASH_KEY=$NOTIFY_PII_HASH_KEY"; fi
  if [ "$svc" = survey_svc ]; then
    echo "SURVEY_TOKEN_KEY=$SURVEY_TOKEN_KEY"
    echo "SURVEY_PUBLIC_BASE_URL=$SURVEY_PUBLIC_BASE_URL"
  fi
}
in_env() {  # in_env SVC COMMAND...
  local svc=$1; shift
  local -a vars; mapfile -t vars < <(service_env "$svc")
  env "${vars[@]}" "$@"
}
start_bg() {  # start_bg NAME SVC COMMAND...: in its own session (prod-down stops the whole group), pid and log file
  local name=$1 svc=$2; shift 2
  local -a vars; mapfile -t vars < <(service_env "$svc")
  setsid env "${vars[@]}" "$@" </dev/null >"$LOG/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

for svc in $SERVICES; do
  step "migrating $svc (as role $svc)"
  in_env "$svc" "$PY" -m "$svc" migrate >"$LOG/$svc-migrate.log" 2>&1 || { cat "$LOG/$svc-migrate.log" >&2; die "migration of $svc failed"; }
done

step "bootstrapping tenant $TENANT"
ADMIN_PASSWORD=$(secret "$SECRETS/admin-password" "${AFTERCARE_PROD_ADMIN_PASSWORD:-}")
AFTERCARE_BOOTSTRAP_PASSWORD="$ADMIN_PASSWORD" in_env customer_svc "$PY" -m customer_svc bootstrap --tenant-code "$TENANT" --tenant-name "${AFTERCARE_PROD_TENANT_NAME:-Aftercare ($TENANT)}" \
  --store "SZ-FT=深圳福田店" --store "SZ-NS=深圳南山店" --admin-no admin \
  >"$LOG/bootstrap.log" 2>&1 || { cat "$LOG/bootstrap.log" >&2; die "bootstrap failed"; }

upstreams=()
declare -A api_port
for svc in $SERVICES; do
  step "starting $svc: api ($API_WORKERS uvicorn workers) and worker"
  port=$("$PY" -c 'from aftercare.gateway import free_port; print(free_port())')
  api_port[$svc]=$port
  start_bg "$svc-api" "$svc" "$PY" -m "$svc" api --host 127.0.0.1 --port "$port" --workers "$API_WORKERS"
  start_bg "$svc-worker" "$svc" "$PY" -m "$svc" worker
  upstreams+=(--upstream "$svc=127.0.0.1:$port")
done
for svc in $SERVICES; do
  wait_ok "http://127.0.0.1:${api_port[$svc]}/readyz" 60 "$RUN/$svc-api.pid" "$LOG/$svc-api.log" || die "$svc api is not ready"
  kill -0 "$(cat "$RUN/$svc-worker.pid")" 2>/dev/null || { tail -n 40 "$LOG/$svc-worker.log" >&2; die "$svc worker exited"; }
done

step "gateway on port $PORT"
limits=()
[ -n "${AFTERCARE_PROD_RATE:-}" ] && limits+=(--rate "$AFTERCARE_PROD_RATE")
[ -n "${AFTERCARE_PROD_BURST:-}" ] && limits+=(--burst "$AFTERCARE_PROD_BURST")
[ -n "${AFTERCARE_PROD_PUBLIC_RATE:-}" ] && limits+=(--public-rate "$AFTERCARE_PROD_PUBLIC_RATE")
[ -n "${AFTERCARE_PROD_PUBLIC_BURST:-}" ] && limits+=(--public-burst "$AFTERCARE_PROD_PUBLIC_BURST")
"$PY" -m aftercare.gateway start --port "$PORT" --workdir "$PROD_DIR/gateway" "${upstreams[@]}" "${limits[@]}" \
  >"$LOG/gateway-start.log" 2>&1 \
  || { cat "$LOG/gateway-start.log" >&2; die "the gateway did not start"; }
for svc in $SERVICES; do
  wait_ok "http://127.0.0.1:$PORT/readyz/$svc" 30 || die "$svc is not ready through the gateway"
done

broker=${AMQP_URL#*@}
[ "$broker" = "$AMQP_URL" ] || broker="${AMQP_URL%%://*}://$broker"
cat <<EOF

Aftercare is running in production mode (processes under $PROD_DIR, logs in $LOG).
  Gateway:     http://127.0.0.1:$PORT/api/v1/...   (health: /healthz, per service: /readyz/<service>)
  Surveys:     answer links $SURVEY_PUBLIC_BASE_URL/s/<token>
$(for svc in $SERVICES; do echo "  $svc: api http://127.0.0.1:${api_port[$svc]} (docs: /docs), worker pid $(cat "$RUN/$svc-worker.pid")"; done)
  Database:    $DB on $PGHOST:$PGPORT (one role per service, passwords in $SECRETS)
  Broker:      $broker

Log in with tenant "$TENANT", employee "admin", password "$ADMIN_PASSWORD":
  curl -s -X POST http://127.0.0.1:$PORT/api/v1/auth/login -H 'Content-Type: application/json' \\
       -d '{"tenant":"$TENANT","employee_no":"admin","password":"$ADMIN_PASSWORD"}'
Stop with: make prod-down   (or scripts/prod-down.sh)
EOF
