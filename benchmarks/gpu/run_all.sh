#!/usr/bin/env bash
# Every GPU check in one run, one table: for a session lent a GPU machine (H100/H200).
#   bash benchmarks/gpu/run_all.sh            # real sizes on the GPU (a few minutes)
#   bash benchmarks/gpu/run_all.sh --smoke    # tiny sizes, runs on a CPU (tested)
# Each benchmarks/gpu/check_*.py prints JSON lines {"check", "metric", "value", "unit"}; this script
# collects them into a markdown table (also written to $OUT/gpu_table.md when $OUT is set).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
log=$(mktemp)
status=0
for check in benchmarks/gpu/check_*.py; do
  echo ">>> $check $*" >&2
  if ! timeout "${CHECK_TIMEOUT:-240}" "$PY" "$check" "$@" > >(tee -a "$log") 2> >(tail -n 20 >&2); then
    echo "{\"check\": \"$(basename "$check" .py)\", \"metric\": \"FAILED\", \"value\": null, \"unit\": \"\"}" >> "$log"
    status=1
  fi
done
table=$("$PY" - "$log" <<'PYEOF'
import json, sys
rows = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
print("| check | metric | value | unit |")
print("|---|---|---|---|")
for r in rows:
    v = r.get("value")
    v = f"{v:.4g}" if isinstance(v, (int, float)) else str(v)
    print(f"| {r.get('check')} | {r.get('metric')} | {v} | {r.get('unit', '')} |")
PYEOF
)
echo "$table"
[ -n "${OUT:-}" ] && echo "$table" > "$OUT/gpu_table.md"
rm -f "$log"
exit $status
