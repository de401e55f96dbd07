#!/usr/bin/env bash
# Every GPU check in one run, one table: for a session lent a GPU machine for a few minutes (H100/H200).
#   bash benchmarks/gpu/run_all.sh            # real sizes on the GPU, under 8 minutes in all
#   bash benchmarks/gpu/run_all.sh --smoke    # tiny sizes on a CPU (tested in CI)
# Works on a bare machine with PyTorch and no project venv: the training and model-latency checks need
# only torch (batches are synthetic); checks whose other dependencies are missing (the tokenizers need
# numpy + OpenCV, RollingDepth needs diffusers) are reported as skipped, not failed.
# Order = priority: training step / MFU, inference latency, tokenizers, RollingDepth. A total budget
# (TOTAL_BUDGET seconds, default 450) bounds the run; a check that would start with too little time left
# is skipped. Each check prints JSON lines {"check", "metric", "value", "unit"}; this script collects
# them into a markdown table (also written to $OUT/gpu_table.md when $OUT is set, and the raw lines to
# $OUT/gpu_results.jsonl).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
smoke=0
for a in "$@"; do [ "$a" = --smoke ] && smoke=1; done
# on a GPU: 7.5 minutes in all; the CPU smoke run has no GPU to return, only a generous bound
TOTAL_BUDGET=${TOTAL_BUDGET:-$([ $smoke = 1 ] && echo 1800 || echo 450)}
log=$(mktemp)
errs=$(mktemp)
status=0
start=$(date +%s)
for name in check_train check_inference check_tokenizers check_rollingdepth; do
  check=benchmarks/gpu/$name.py
  left=$(( TOTAL_BUDGET - ($(date +%s) - start) ))
  limit=${CHECK_TIMEOUT:-$([ $smoke = 1 ] && echo 900 || echo 300)}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 30 ]; then
    echo "{\"check\": \"$name\", \"metric\": \"skipped\", \"value\": \"time budget\", \"unit\": \"\"}" >> "$log"
    continue
  fi
  extra=()
  [ "$name" = check_train ] && extra=(--budget-s $(( limit - 30 )))
  echo ">>> $check $* (limit ${limit} s)" >&2
  timeout "$limit" "$PY" "$check" "$@" "${extra[@]}" > >(tee -a "$log") 2> "$errs"
  rc=$?
  tail -n 20 "$errs" >&2
  if [ $rc -ne 0 ]; then
    missing=$(grep -oE "No module named '[^']+'" "$errs" | head -1 | sed -E "s/No module named '([^'.]+).*/\1/")
    if [ -n "$missing" ]; then
      echo "{\"check\": \"$name\", \"metric\": \"skipped\", \"value\": \"missing $missing\", \"unit\": \"\"}" >> "$log"
    else
      reason=$([ $rc -eq 124 ] && echo "timeout after ${limit} s" || echo "exit $rc")
      echo "{\"check\": \"$name\", \"metric\": \"FAILED\", \"value\": \"$reason\", \"unit\": \"\"}" >> "$log"
      status=1
    fi
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
    v = f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    print(f"| {r.get('check')} | {r.get('metric')} | {v} | {r.get('unit', '')} |")
PYEOF
)
echo "$table"
echo "total wall time: $(( $(date +%s) - start )) s" >&2
if [ -n "${OUT:-}" ]; then
  echo "$table" > "$OUT/gpu_table.md"
  grep '^{' "$log" > "$OUT/gpu_results.jsonl"
fi
rm -f "$log" "$errs"
exit $status
