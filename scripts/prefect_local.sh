#!/usr/bin/env bash
# The real Prefect deployment path on one machine: a local Prefect server (SQLite under
# PREFECT_HOME), the process work pool, every deployment of prefect.yaml, and a worker.
#
#   scripts/prefect_local.sh start [PREFECT_HOME]   # default PREFECT_HOME: .scratch/prefect-local
#   scripts/prefect_local.sh status [PREFECT_HOME]
#   scripts/prefect_local.sh stop [PREFECT_HOME]
#
# then, in another shell:
#   source .scratch/prefect-local/run/env          # sets PREFECT_API_URL
#   prefect deployment run curate/egogen -p raw=data/raw/egogen -p out=data/clips --watch
#
# Environment: PREFECT_PORT (4200), PREFECT_POOL (egom2p-local), PYTHON (.venv/bin/python),
# RAY_ADDRESS (a Ray cluster instead of a local Ray per run) and the storage options EGOM2P_STORAGE_OPTIONS,
# AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP: they reach the flow runs twice, through the worker's environment
# and through the deployments' job variables (resolved by `prefect deploy`, see egom2p/flows/deployments.py).
# A Prefect worker ignores SIGTERM: stop sends it SIGINT twice (then SIGKILL after 30 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACTION="${1:-start}"
export PREFECT_HOME="$(mkdir -p "${2:-${PREFECT_HOME:-$ROOT/.scratch/prefect-local}}" && cd "${2:-${PREFECT_HOME:-$ROOT/.scratch/prefect-local}}" && pwd)"
PORT="${PREFECT_PORT:-4200}"
POOL="${PREFECT_POOL:-egom2p-local}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PREFECT="$(dirname "$PY")/prefect"
RUN="$PREFECT_HOME/run"
mkdir -p "$RUN"

export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
export RAY_USAGE_STATS_ENABLED=0

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_healthy() {
  "$PY" - "$PREFECT_API_URL" <<'PYEOF'
import sys, time, urllib.request
url = sys.argv[1] + "/health"
deadline = time.time() + 180
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"Prefect server at {url} did not become healthy in 180 s")
PYEOF
}

stop_pid() {  # name signal-sequence...
  local name="$1" pid
  alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  pid="$(cat "$RUN/$name.pid")"
  if [[ "$name" == worker ]]; then
    kill -INT "$pid" 2>/dev/null || true; sleep 1; kill -INT "$pid" 2>/dev/null || true
  else
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$name.pid"
  echo "stopped $name (pid $pid)"
}

case "$ACTION" in
  start)
    if alive server; then
      echo "server already running (pid $(cat "$RUN/server.pid")) at $PREFECT_API_URL"
    else
      # setsid: the server and its uvicorn child form one process group that stop can end together
      setsid "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$RUN/server.log" 2>&1 </dev/null &
      echo $! >"$RUN/server.pid"
      echo "server starting (pid $!), log $RUN/server.log"
    fi
    wait_healthy || { echo "see $RUN/server.log" >&2; exit 1; }
    echo "server healthy at $PREFECT_API_URL"
    "$PREFECT" work-pool create --type process "$POOL" --overwrite >"$RUN/pool.log" 2>&1 \
      || { cat "$RUN/pool.log" >&2; exit 1; }
    echo "work pool $POOL (process)"
    (cd "$ROOT" && "$PREFECT" --no-prompt deploy --all --pool "$POOL" >"$RUN/deploy.log" 2>&1) \
      || { tail -40 "$RUN/deploy.log" >&2; exit 1; }
    grep -o "Deployment '[^']*' successfully created" "$RUN/deploy.log" | sed 's/^/  /' || true
    if alive worker; then
      echo "worker already running (pid $(cat "$RUN/worker.pid"))"
    else
      cd "$ROOT"  # flow runs start in the worker's directory
      PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-2}" \
        setsid "$PREFECT" worker start --pool "$POOL" >"$RUN/worker.log" 2>&1 </dev/null &
      echo $! >"$RUN/worker.pid"
      echo "worker started (pid $(cat "$RUN/worker.pid")), log $RUN/worker.log"
    fi
    printf 'export PREFECT_HOME=%q\nexport PREFECT_API_URL=%q\n' "$PREFECT_HOME" "$PREFECT_API_URL" >"$RUN/env"
    echo "ready: source $RUN/env && prefect deployment run curate/egogen -p raw=DIR -p out=DIR --watch"
    ;;
  stop)
    stop_pid worker
    stop_pid server
    ;;
  status)
    for n in server worker; do
      if alive "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
    done
    echo "PREFECT_API_URL=$PREFECT_API_URL"
    ;;
  *)
    echo "usage: $0 start|stop|status [PREFECT_HOME]" >&2
    exit 2
    ;;
esac
