#!/usr/bin/env bash
# Stop what scripts/prod-up.sh started: every process named by a pid file under $AFTERCARE_PROD_DIR (var/prod),
# gateway first (no new requests), then the api and worker processes. Each gets SIGTERM (graceful: requests in
# flight finish, workers stop consuming and relaying), then its whole process group SIGKILL after a grace period.
# Data, keys and passwords are kept; `rm -rf var/prod` and dropping the database start from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
PROD_DIR=${AFTERCARE_PROD_DIR:-$PWD/var/prod}
[ -d "$PROD_DIR" ] && PROD_DIR=$(cd "$PROD_DIR" && pwd)
GRACE=${AFTERCARE_PROD_STOP_SECONDS:-20}

ours() {  # ours PID: alive, and started by prod-up for this PROD_DIR (a stale pid may belong to someone else now):
          # its environment says so (api, worker) or its command line names a file there (nginx rewrites its environ)
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/environ" ] || return 0
  tr '\0' '\n' <"/proc/$1/environ" | grep -qxF "AFTERCARE_PROD_DIR=$PROD_DIR" && return 0
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$PROD_DIR/"
}
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

pidfiles=()
[ -f "$PROD_DIR/gateway/gateway.pid" ] && pidfiles+=("$PROD_DIR/gateway/gateway.pid")
for f in "$PROD_DIR"/run/*-api.pid "$PROD_DIR"/run/*.pid; do
  [ -f "$f" ] && [[ ! " ${pidfiles[*]} " =~ " $f " ]] && pidfiles+=("$f")
done
if [ ${#pidfiles[@]} -eq 0 ]; then
  echo "nothing to stop under $PROD_DIR"
  exit 0
fi

stopping=()
for f in "${pidfiles[@]}"; do
  pid=$(cat "$f")
  name=$(basename "$f" .pid)
  if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid"; then
    echo "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    stopping+=("$pid")
  else
    echo "$name (pid $pid) is not running"
  fi
  rm -f "$f"
done

deadline=$((SECONDS + GRACE))
for pid in "${stopping[@]}"; do
  while { kill -0 "$pid" 2>/dev/null || group_alive "$pid"; } && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if group_alive "$pid"; then
    echo "pid $pid did not stop within ${GRACE}s: killing its process group"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
done
echo "stopped"
