#!/usr/bin/env bash
# One GPU session in one command: the gpu-marked tests, then the GPU benchmark (float32, then bf16
# autocast, then torch.compile times), each phase under its own time limit, so that the whole fits
# a 10-minute device call (at most 170 + 20 + 2 x 120 + 90 = 520 s with the defaults, and the
# probe). Written for the project's device tool (`run`, which copies the working tree over and
# brings back what is written under $OUT), and works on any CUDA machine:
#
#     bash benchmarks/gpu_session.sh [all|tests|bench|compile]      # default: all
#
# It uses the machine's own python3 (a CUDA build of torch, with Triton and pytest) and rnnreg
# from src/, not installed. What it writes, under $OUT (else ./gpu-results):
#   device.txt         gpu_probe.py's report (versions, the GPU, TF32 defaults, torch.nn.LSTM's
#                      dtype under bf16 autocast, a Triton launch), then nvidia-smi
#   gpu-tests.log      pytest -m gpu: tests/kernels/test_steploop_cuda.py, tests/layers/test_torch_parity.py
#   gpu.jsonl          bench_gpu.py's throughput lines (3 repeats; AWD, medium, small; fp32, then
#                      bf16), each written when measured
#   gpu-compile.jsonl  the torch.compile times at the medium size (and that run's 1-repeat lines)
#   gpu-bench.log      the benchmark runs' progress and exit statuses (124: out of time)
# Limits (seconds) from the environment: TEST_SECONDS (170: the tests compile some 150 Triton
# kernel variants, GRU-D's step and a compiled layer), BENCH_SECONDS (120 for each precision),
# COMPILE_SECONDS (90: a fresh process, two short paired measurements, then two first compiles). A phase that runs out keeps what it wrote; pytest is stopped
# with SIGINT, so its log still lists what failed so far.
set -uo pipefail
cd "$(dirname "$0")/.."
phase="${1:-all}"
case "$phase" in
    all | tests | bench | compile) ;;
    *) echo "usage: gpu_session.sh [all|tests|bench|compile], got '$phase'" >&2; exit 2 ;;
esac
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python3 benchmarks/gpu_probe.py > "$out/device.txt" 2>&1
nvidia-smi >> "$out/device.txt" 2>&1

if [[ "$phase" == all || "$phase" == tests ]]; then
    timeout -s INT -k 20 "${TEST_SECONDS:-170}" python3 -m pytest -p no:cacheprovider -m gpu -rfEs \
        --tb=short tests/kernels/test_steploop_cuda.py tests/layers/test_torch_parity.py \
        > "$out/gpu-tests.log" 2>&1
    echo "tests exit $?" >> "$out/gpu-tests.log"
fi
if [[ "$phase" == all || "$phase" == bench ]]; then
    # The sizes the targets name first (AWD, medium), so that a run cut short loses small ones.
    for dtype in fp32 bf16; do
        timeout "${BENCH_SECONDS:-120}" python3 benchmarks/bench_gpu.py --sizes awd,medium,small \
            --dtypes "$dtype" --repeats 3 --no-compile >> "$out/gpu.jsonl" 2>> "$out/gpu-bench.log"
        echo "bench $dtype exit $?" >> "$out/gpu-bench.log"
    done
fi
if [[ "$phase" == all || "$phase" == compile ]]; then
    timeout "${COMPILE_SECONDS:-90}" python3 benchmarks/bench_gpu.py --sizes medium \
        --configs plain,zoneout --dtypes fp32 --repeats 1 --min-time 0.05 \
        >> "$out/gpu-compile.jsonl" 2>> "$out/gpu-bench.log"
    echo "compile exit $?" >> "$out/gpu-bench.log"
fi
tail -n 3 "$out/gpu-tests.log" "$out/gpu-bench.log" 2>/dev/null
