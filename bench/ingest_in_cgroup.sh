#!/usr/bin/env bash
# bench/scale.py's ingest inside a memory cgroup: does an N-triple ingest fit
# a machine of G GiB? Ray runs inside the same cgroup, its object store sized
# as Ray would size it on such a machine (30% of G). Needs root and cgroup v1
# (/sys/fs/cgroup/memory); the KG is generated first, outside the limit.
#
#   sudo bash bench/ingest_in_cgroup.sh TRIPLES GIB [WORK]
#
# Prints bench/scale.py's table, then the cgroup's peak usage (page cache and
# spilled objects included), how often it hit the limit (the kernel reclaimed
# cache instead), and the OOM kills (0: the ingest fit).
set -euo pipefail
TRIPLES=${1:?triples}; GIB=${2:?GiB}; WORK=${3:-/tmp/kgscale-scale}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RAY=${RAY:-ray}
$PY bench/scale.py --triples "$TRIPLES" --work "$WORK" --skip ingest,paths,rank --rank-entities= >/dev/null
CG=/sys/fs/cgroup/memory/kgscale_$GIB
mkdir -p "$CG"
echo $((GIB * 1024 ** 3)) > "$CG/memory.limit_in_bytes"
echo 0 > "$CG/memory.max_usage_in_bytes"
echo 0 > "$CG/memory.failcnt" || true
echo $$ > "$CG/cgroup.procs"
trap '$RAY stop --force >/dev/null 2>&1 || true' EXIT
$RAY stop --force >/dev/null 2>&1 || true
$RAY start --head --num-cpus 2 --object-store-memory $((GIB * 1024 ** 3 * 3 / 10)) --include-dashboard false \
  --disable-usage-stats >/dev/null
RAY_ADDRESS=auto $PY bench/scale.py --triples "$TRIPLES" --work "$WORK" --skip paths,rank --rank-entities= \
  || echo "BENCH FAILED rc=$?"
echo "cgroup peak usage GiB: $(awk '{printf "%.2f", $1/2^30}' "$CG/memory.max_usage_in_bytes")"
echo "cgroup hit its limit (failcnt): $(cat "$CG/memory.failcnt")"
grep -E "oom_kill|under_oom" "$CG/memory.oom_control" || true
