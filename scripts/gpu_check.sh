#!/usr/bin/env bash
# The GPU check: everything that runs only on a CUDA GPU, in one command, with a short report (docs/benchmarks.md,
# "GPU"). About 5 minutes on one H200.
#
#   bash scripts/gpu_check.sh [report=<file.md>] [work=<dir>]
#       1. the library versions and the device;
#       2. pytest -m cuda: every model, precision, speed switch and data path on the GPU (tests/test_cuda.py);
#       3. the default run (LeNet-5 on the digits) with trainer=gpu: test/acc within one point of the CPU run's;
#       4. experiment=resnet20_cifar10 on CIFAR-shaped random data (45,000 training images held on the GPU), one
#          epoch with trainer=gpu;
#       5. the GPU benchmark: ResNet-50, bf16 autocast, channels-last, batch 256, 224x224, ours against
#          torchvision's (scripts/benchmark.py parts=a);
#       6. the training loop's own cost on the GPU (docs/benchmarks.md, "Speed"; scripts/benchmark.py parts=b): the
#          default run against a minimal loop with ResNet-20 on CIFAR-shaped data held on the GPU (an epoch's
#          seconds, target 1.5 s, and the ratio, target 1.15x), and with LeNet-5 on the digits eager and compiled
#          with CUDA graphs (compile_mode=reduce-overhead; target 1.5x).
#     Each step runs whatever happened before it and prints pass/FAIL with its seconds; the exit status is 1 if any
#     failed. Runs and logs go to work= (default logs/gpu_check/<timestamp>); report= also writes the report there.
#     only=<step,step,...> runs those steps alone (names as in the report: pytest, default_run,
#     resnet20_cifar10_fake, benchmark_resnet50, speed_resnet20, speed_lenet5, speed_lenet5_compiled), e.g.
#     only=speed_resnet20,speed_lenet5,speed_lenet5_compiled for a second call within a device's time.
#
#   bash scripts/gpu_check.sh prepare
#       On a machine that reaches the package registry: download into .whl/ the wheels of what a GPU machine may lack
#       (hydra-core, omegaconf, antlr4-python3-runtime, at the versions of constraints.txt). On a GPU machine
#       without a registry, the check installs them from .whl/ (into a folder of its own, not the environment) when
#       `import hydra` fails there, and uses this checkout's code when the project is not installed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="$ROOT/.whl"
OFFLINE_PACKAGES=(hydra-core omegaconf antlr4-python3-runtime)
CPU_TEST_ACC=0.9778 # the default run's test/acc on the CPU (README)

pinned() { grep -i "^$1==" "$ROOT/constraints.txt" | head -n 1; }

if [[ "${1:-}" == "prepare" ]]; then
    set -e
    mkdir -p "$WHEELS"
    for package in "${OFFLINE_PACKAGES[@]}"; do
        # antlr4-python3-runtime 4.9.3 exists only as a source archive: build its pure-Python wheel
        "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$(pinned "$package")"
    done
    ls -1 "$WHEELS"
    exit 0
fi

REPORT="" WORK="" ONLY=""
STEPS=(pytest default_run resnet20_cifar10_fake benchmark_resnet50 speed_resnet20 speed_lenet5 speed_lenet5_compiled)
for arg in "$@"; do
    case "$arg" in
    report=*) REPORT="${arg#report=}" ;;
    work=*) WORK="${arg#work=}" ;;
    only=*) ONLY=",${arg#only=}," ;;
    *)
        echo "error: unknown argument '$arg'; accepted: prepare, report=<file.md>, work=<dir>, only=<steps>" >&2
        exit 2
        ;;
    esac
done
for name in $(echo "${ONLY//,/ }"); do
    if [[ " ${STEPS[*]} " != *" $name "* ]]; then
        echo "error: unknown step '$name' in only=; accepted: $(IFS=,; echo "${STEPS[*]}" | sed 's/,/, /g')" >&2
        exit 2
    fi
done
if ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "error: torch sees no CUDA device here; the GPU check needs one" >&2
    exit 2
fi
WORK="$(realpath -m "${WORK:-$ROOT/logs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}")"
mkdir -p "$WORK" || exit 2
cd "$ROOT" || exit 2

# What the machine lacks: Hydra from .whl/ (into $WORK/site), the project from this checkout.
if ! "$PYTHON" -c "import hydra, omegaconf" 2>/dev/null; then
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "error: hydra-core is not installed and $WHEELS holds no wheels; run 'bash scripts/gpu_check.sh prepare' on a machine with the package registry first" >&2
        exit 2
    fi
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! (cd / && "$PYTHON" -c "import models, training, data" 2>/dev/null); then
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=":4096:8"

ROWS=()
FAILED=0
# step <name> <seconds allowed> <command...>: run, log to $WORK/<name>.log, record pass/FAIL and the seconds taken
step() {
    local name="$1" limit="$2" start=$SECONDS status seconds why
    shift 2
    [[ -z "$ONLY" || "$ONLY" == *",$name,"* ]] || return 0
    echo "── $name"
    timeout --signal=TERM --kill-after=20 "$limit" "$@" >"$WORK/$name.log" 2>&1
    status=$?
    seconds=$((SECONDS - start))
    if [[ $status -eq 0 ]]; then
        ROWS+=("| $name | pass | $seconds | $(detail "$name") |")
    else
        FAILED=1
        [[ $status -eq 124 ]] && why="timed out after ${limit}s" || why="exit $status"
        ROWS+=("| $name | FAIL ($why) | $seconds | $(detail "$name") |")
        tail -n 25 "$WORK/$name.log"
    fi
    echo "   $(tail -n 1 "$WORK/$name.log")"
}
# the line of a step's log that says what it measured
detail() {
    case "$1" in
    pytest) grep -E "[0-9]+ (passed|failed|skipped|errors?)" "$WORK/pytest.log" | tail -n 1 | tr -d '=' | xargs ;;
    default_run | resnet20_cifar10_fake) grep -E "^metrics.json: " "$WORK/$1.log" | tail -n 1 ;;
    benchmark_resnet50) grep -E "^\| resnet50 " "$WORK/benchmark_resnet50.log" | tail -n 1 | tr '|' ' ' | xargs ;;
    speed_*) grep -E "^\| the default run" "$WORK/$1.log" | tail -n 1 | cut -d'|' -f3- | tr '|' ' ' | xargs ;;
    esac
}

# A run of scripts/train.py into $WORK/runs/<name>, then a check of its metrics.json; prints the test metrics.
# (Exported, for `timeout` to run it in bash -c.)
# shellcheck disable=SC2317
train_and_check() {
    local name="$1" check="$2"
    shift 2
    "$PYTHON" scripts/train.py "hydra.run.dir=$WORK/runs/$name" "$@" || return
    "$PYTHON" - "$WORK/runs/$name/metrics.json" "$check" <<'EOF'
import json, math, sys
metrics = json.load(open(sys.argv[1]))
acc, loss = metrics["test/acc"], metrics["test/loss"]
ok = eval(sys.argv[2], {"math": math}, {"acc": acc, "loss": loss})
print(f"metrics.json: test/acc {acc:.4f}, test/loss {loss:.4f}; {sys.argv[2]}: {'yes' if ok else 'NO'}")
sys.exit(0 if ok else 1)
EOF
}
export -f train_and_check
export PYTHON WORK

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    "$PYTHON" - <<'EOF'
import platform, hydra, pytorch_lightning, torch, torchvision
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}), torchvision {torchvision.__version__}, pytorch-lightning "
      f"{pytorch_lightning.__version__}, hydra-core {hydra.__version__}")
print(f"device: {torch.cuda.get_device_name(0)}")
EOF
} | tee "$WORK/versions.log"

step pytest 360 "$PYTHON" -m pytest -m cuda -n 12 --dist load -p no:cacheprovider -q -rfE --basetemp="$WORK/pytest"
step default_run 120 bash -c 'train_and_check "$@"' - default_run "abs(acc - $CPU_TEST_ACC) <= 0.01" trainer=gpu
step resnet20_cifar10_fake 150 bash -c 'train_and_check "$@"' - resnet20_cifar10_fake "math.isfinite(loss)" \
    experiment=resnet20_cifar10 data=fake data.train_size=45000 data.val_size=5000 data.test_size=10000 \
    trainer=gpu trainer.max_epochs=1
step benchmark_resnet50 150 "$PYTHON" scripts/benchmark.py parts=a device=cuda precision=bf16 channels_last=true \
    batch=256 image_size=224 models=resnet50
# the training loop's cost: s/epoch of the default run, of the minimal loop, and their ratio
step speed_resnet20 200 "$PYTHON" scripts/benchmark.py parts=b device=cuda network=resnet20 data=cifar_shaped \
    sides=default epochs=3 rounds=2
step speed_lenet5 120 "$PYTHON" scripts/benchmark.py parts=b device=cuda sides=default,alone epochs=4 rounds=3
step speed_lenet5_compiled 200 "$PYTHON" scripts/benchmark.py parts=b device=cuda sides=default epochs=4 rounds=2 \
    compile=true compile_mode=reduce-overhead

REPORT_TEXT="$(
    echo "## GPU check, $(head -n 1 "$WORK/versions.log" | cut -d' ' -f2-)"
    echo
    tail -n +2 "$WORK/versions.log" | sed 's/^/- /'
    echo
    echo "| step | result | seconds | what it measured |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
)"
echo
echo "$REPORT_TEXT"
echo "logs: $WORK"
if [[ -n "$REPORT" ]]; then
    echo "$REPORT_TEXT" >"$REPORT" || exit 2
fi
exit "$FAILED"
