#!/usr/bin/env bash
# GPU benchmark of tseg's `paper` preset (issue 20, item 6); the measurements are benchmarks/gpu.py.
#
#   bash benchmarks/gpu.sh [--dry-run] [--out PATH]
#
# On a GPU machine, in under 8 minutes (GPU_BENCH_TOTAL_S, default 450 s, bounds the parts):
#   1. DDP: eager bf16 training steps, batch 32 per GPU, over every visible GPU
#      (python -m torch.distributed.run --nproc_per_node=<torch.cuda.device_count()>), cap 120 s;
#   2. one GPU: training images/s at batch 32, 384 px, fp32 and bf16, eager, then inference
#      latency at L = 1, 4, 16, 64 against CLIPSeg, then fp32 and bf16 with torch.compile
#      (compile time apart), peak GPU memory of every row; capped by what is left;
#   3. the parts merged into one JSON (commit, command, GPUs, torch, every figure) at --out,
#      by default benchmarks/results/gpu.json.
# A part that runs out of time keeps what it measured and the JSON lists what is missing; the
# script exits 1 when a part failed or was stopped (the JSON is written all the same).
#
# --dry-run: the same code on the CPU with micro sizes, DDP as 2 gloo processes, torch.compile
# replaced by eager (noted in the JSON), in well under a minute; the tests run it. It writes to
# --out or a new temporary folder, never to benchmarks/results/gpu.json.
#
# Python: $PYTHON, else .venv/bin/python, else python3. If it cannot `import tseg` (a fresh
# checkout), `pip install -e .` is tried, and if that fails too (no network), src/ goes on
# PYTHONPATH. The commit recorded is $TSEG_COMMIT, else `git rev-parse HEAD` (dirty: whether
# tracked files differ), with the command, the machine and the load average before and after.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu.sh [--dry-run] [--out PATH]" >&2; exit 2; }
DRY=0
OUT=""
COMMAND="bash benchmarks/gpu.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) [ $# -ge 2 ] || usage; OUT="$(realpath -m "$2")"; shift ;;  # from the caller's folder
    -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) usage ;;
  esac
  shift
done
cd "$(dirname "$0")/.."

# Never let a dry run replace the committed GPU figures.
if [ "$DRY" = 1 ] && [ -n "$OUT" ] \
  && [ "$(realpath -m "$OUT")" = "$(realpath -m benchmarks/results/gpu.json)" ]; then
  echo "gpu.sh: a dry run does not write benchmarks/results/gpu.json; choose another --out" >&2
  exit 2
fi

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import tseg" 2>/dev/null; then
  "$PYTHON" -m pip install -q --retries 1 --timeout 15 -e . \
    || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
PARTS_DIR=$(mktemp -d)
trap 'rm -rf "$PARTS_DIR"' EXIT
if [ "$DRY" = 1 ]; then
  FLAGS=(--dry-run)
  export CUDA_VISIBLE_DEVICES=""
  NPROC=2
  TOTAL_S=${GPU_BENCH_TOTAL_S:-240}
  [ -n "$OUT" ] || OUT="$(mktemp -d)/gpu.json"
else
  FLAGS=()
  NPROC=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
  if [ "$NPROC" -lt 1 ]; then
    echo "gpu.sh: no GPU visible to torch; use --dry-run to run on the CPU" >&2
    exit 2
  fi
  TOTAL_S=${GPU_BENCH_TOTAL_S:-450}
  [ -n "$OUT" ] || OUT=benchmarks/results/gpu.json
fi

SECONDS=0
DDP_RC=0
timeout --kill-after=10 120 "$PYTHON" -m torch.distributed.run --standalone \
  --nproc_per_node="$NPROC" benchmarks/gpu.py ddp --out "$PARTS_DIR/ddp.json" "${FLAGS[@]}" || DDP_RC=$?

LEFT=$((TOTAL_S - SECONDS))
SINGLE_RC=0
timeout --kill-after=10 "$LEFT" "$PYTHON" benchmarks/gpu.py single \
  --out "$PARTS_DIR/single.json" --deadline-s "$((LEFT - 5))" "${FLAGS[@]}" || SINGLE_RC=$?

"$PYTHON" benchmarks/gpu.py merge --parts "$PARTS_DIR" --out "$OUT" --command "$COMMAND" \
  --load-before "$LOAD_BEFORE" \
  --exit-code "ddp=$DDP_RC" --exit-code "single=$SINGLE_RC" "${FLAGS[@]}"
echo "gpu.sh: ${SECONDS} s"
[ "$DDP_RC" = 0 ] && [ "$SINGLE_RC" = 0 ]
