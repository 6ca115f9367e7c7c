#!/usr/bin/env bash
# The GPU check in one call: on a bare GPU machine with only torch preinstalled and no network,
# install phonetui from the wheels carried in .whl/, run the GPU tests (pytest -m gpu: fp16 with a
# GradScaler among them), then bench/bench.py on full-size demo rows (fp16 among its variants) and one
# fp16 epoch from the CLI; results-gpu.json and every log go to $OUT.
#
#   bash bench/gpu_check.sh --prepare         # here, with a package index: build .whl/ (then carry it)
#   bash bench/gpu_check.sh                   # on the GPU machine (the device tool: carry [".whl"])
#   GPU_CHECK_CPU=1 GPU_CHECK_PYTHON=.venv/bin/python bash bench/gpu_check.sh
#                                             # the same steps on a CPU, GPU-only parts skipped, bench shrunk
#
# Each step's log is $OUT/NN-name.log and its exit code goes to $OUT/summary.txt; a failed step does
# not stop the later ones (one GPU call should bring back everything it can).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(tomli-w rich markdown-it-py mdurl pygments pytest iniconfig pluggy packaging)

if [[ ${1:-} == --prepare ]]; then
    rm -rf .whl && mkdir -p .whl
    python3 -m pip wheel -q --no-deps -w .whl . &&
        python3 -m pip download -q --no-deps -c constraints.txt -d .whl "${WHEELS[@]}" &&
        ls .whl && du -sh .whl
    exit
fi

OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
CPU=${GPU_CHECK_CPU:-0}
: >"$OUT/summary.txt"
step() {  # step NAME COMMAND...: run it, log it, record its exit code
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    tail -n 3 "$OUT/$name.log" | sed 's/^/   | /' | tee -a "$OUT/summary.txt"
    return $rc
}

# the machine's own Python (the one with torch); the wheels go into a folder on PYTHONPATH
PY=${GPU_CHECK_PYTHON:-python3}
# a relative path (the dry run's .venv/bin/python) must hold after `cd /`; absolute, the venv's link kept
[[ $PY == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
SITE=$(mktemp -d)/site
export PYTHONPATH=$SITE
step 01-env bash -c "nvidia-smi || true; '$PY' -c 'import sys, torch, numpy; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), numpy.__version__)'; nproc; free -g"
step 02-install bash -c "'$PY' -m pip install -q --no-index --find-links .whl --no-deps --target '$SITE' .whl/phonetui-*.whl ${WHEELS[*]} && cd / && '$PY' -c 'import phonetui, torch; print(phonetui.__file__, torch.__version__)'"
# the tests run from the checkout (tests/ is not in the wheel) against the installed package
step 03-gpu-tests "$PY" -m pytest -p no:cacheprovider -m gpu -v -rs tests/test_step.py
step 04-step-tests "$PY" -m pytest -p no:cacheprovider -q tests/test_step.py tests/test_resume.py

DATA=$(mktemp -d)/full
if [[ $CPU == 1 ]]; then  # a dry run: small data, one short case of each kind
    step 05-data "$PY" -m phonetui demo-data --simulated --out "$DATA" --train-rows 40000 --test-rows 10000
    step 06-bench "$PY" bench/bench.py --data "$DATA" --cases baseline:512,bilstm-small:4 --seconds 1 \
        --concurrent 2 --json "$OUT/results-gpu.json"
else
    step 05-data "$PY" -m phonetui demo-data --simulated --out "$DATA" --train-rows 1229932 --test-rows 451552
    step 06-bench "$PY" bench/bench.py --data "$DATA" --device cuda --seconds 3 --concurrent 4 \
        --cases baseline:64,baseline:512,wide-deep:512,wide-deep:4096,bilstm:16 --json "$OUT/results-gpu.json"
fi
# fp16 with a GradScaler (what precision = "auto" picks on a T4 or V100), asked for here on any GPU: one
# epoch of the course baseline from the CLI, capture asked for (it must fall back, saying why); the
# run's record shows the autocast, the scaler and the notes
RUNS=$(mktemp -d)
step 07-fp16 bash -c "'$PY' -m phonetui train --data '$DATA' --runs '$RUNS' --preset baseline --epochs 1 \
    --precision fp16 --capture on $([[ $CPU == 1 ]] && echo '--device cpu') && grep -E '^(autocast|grad_scaler|capture|step_notes|threads|device) ' '$RUNS'/*/config.toml"
cp "$OUT/06-bench.log" "$OUT/bench-table.md" 2>/dev/null
echo "== done in $SECONDS s; logs in $OUT" | tee -a "$OUT/summary.txt"
