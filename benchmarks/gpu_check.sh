#!/usr/bin/env bash
# One GPU check: every benchmark in benchmarks/ on CUDA, sized for one large GPU (an H200), each under
# its own time limit (the limits add up to 7 min 10 s; each is cut to what is left of 7.5 min from the
# start, so the whole check ends within 8 min), then ONE markdown table of the figures.
#
#   bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.txt        (from any directory)
#
# Without a CUDA device (torch.cuda.is_available() of the venv's torch is False) it prints one line
# and exits 0 before running anything. A benchmark that fails or runs past its limit becomes a
# FAILED row and the others still run; the exit status is then 1. Uses .venv/bin/python when
# present, else python3.
#
# Environment:
#   LOWBIT_GPU_CHECK_DEVICE=cpu   dry run: the same benchmarks on the CPU with tiny sizes and twice
#                                 the time limits (checks the script and the table without a GPU;
#                                 the figures mean nothing)
#   LOWBIT_GPU_CHECK_LOGS=DIR     where each benchmark's log and status.tsv go (default: a new /tmp dir)
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
MODE=${LOWBIT_GPU_CHECK_DEVICE:-cuda}

case "$MODE" in
  cuda)
    if ! have=$("$PY" -c "import torch; print('yes' if torch.cuda.is_available() else 'no')" 2>/dev/null); then
      echo "gpu_check: cannot import torch with $PY; nothing was run"
      exit 1
    fi
    if [ "$have" != yes ]; then
      echo "gpu_check: no CUDA device (torch.cuda.is_available() is False for $PY); nothing was run"
      exit 0
    fi ;;
  cpu) ;;
  *) echo "gpu_check: LOWBIT_GPU_CHECK_DEVICE must be cuda or cpu, got '$MODE'" >&2; exit 2 ;;
esac

unset RAY_ADDRESS  # the Ray benchmarks start a private Ray on this machine
RUN=${LOWBIT_GPU_CHECK_LOGS:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$RUN" && : > "$RUN/status.tsv"

# label, time limit (s), then the command's arguments for the cuda run ... and for the cpu dry run
if [ "$MODE" = cuda ]; then
  PROBE="--device cuda --repeats 3 --batch 8192 --dg-batch 8192 --scan-sample 1000 --dg-sample 2000"
  FOLD="--device cuda --repeats 2 --seeds 2 --max-concurrent 2"
  TRAIN="--device cuda --repeats 10 --steps 20 --warmup 5"
  AUG="--device cuda --repeats 3 --workers 0 8 --threads 1"
  EPOCH="--device cuda"
  OVERHEAD="--trials 120 --repeats 2"
  B1=128 B2=512 SCALE=1
else
  PROBE="--device cpu --repeats 1 --hidden 16 --batch 256 --dg-batch 64 --lr-step 1e-3 --scan-sample 3 --dg-sample 5"
  FOLD="--device cpu --quick --repeats 1 --seeds 1 --max-concurrent 1"
  TRAIN="--device cpu --repeats 1 --steps 1 --warmup 1 --width 4"
  AUG="--device cpu --repeats 1 --workers 0 --threads 1 --images 512"
  EPOCH="--device cpu --n-train 256 --n-test 128 --width 4 --warmup 1"
  OVERHEAD="--trials 4 --repeats 1"
  B1=8 B2=16 SCALE=2  # a small shared CPU machine: twice the time limits
fi

DEADLINE=$(( 450 * SCALE ))  # seconds after the script started ($SECONDS) by which the last benchmark ends
bench() {  # bench LABEL LIMIT SCRIPT ARGS...
  local label=$1 limit=$(( $2 * SCALE )) t0 rc
  shift 2
  (( limit > DEADLINE - SECONDS )) && limit=$(( DEADLINE - SECONDS > 1 ? DEADLINE - SECONDS : 1 ))
  echo "=== $label: $PY $* (limit ${limit} s) ==="
  t0=$(date +%s)
  timeout -k 5 "$limit" "$PY" "$@" 2>&1 < /dev/null | tee "$RUN/$label.log"
  rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\t%s\n' "$label" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$RUN/status.tsv"
  echo "=== $label: exit $rc after $(( $(date +%s) - t0 )) s ==="
}

echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), mode $MODE, logs in $RUN"
"$PY" -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', '|', torch.get_num_threads(), 'CPU threads')"

# (the unquoted argument strings are split into words on purpose)
bench probe_speed_scan    50 benchmarks/probe_speed.py --only scan $PROBE
bench probe_speed_dg      70 benchmarks/probe_speed.py --only dg $PROBE
bench fold_speed          80 benchmarks/fold_speed.py $FOLD
bench train_speed_b$B1    40 benchmarks/train_speed.py --batch $B1 $TRAIN
bench train_speed_b$B2    40 benchmarks/train_speed.py --batch $B2 $TRAIN
bench augment_speed       50 benchmarks/augment_speed.py $AUG
bench cifar_epoch         50 benchmarks/cifar_epoch.py $EPOCH
bench trial_overhead      50 benchmarks/trial_overhead.py $OVERHEAD

echo
echo "=== gpu_check table ($MODE, $(date -u +%Y-%m-%d), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), ${SECONDS} s in total) ==="
"$PY" benchmarks/gpu_table.py "$RUN"
