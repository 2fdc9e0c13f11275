#!/usr/bin/env bash
# One GPU session in one command: the gpu-marked tests, then the GPU benchmark (float32, then bf16
# autocast, then torch.compile times), each phase under its own time limit, so that the whole fits
# a 10-minute device call (at most 8.5 minutes with the defaults, and the probe). Written for the project's device
# tool (`run`, which copies the working tree over and brings back what is written under $OUT), and
# works on any CUDA machine:
#
#     bash benchmarks/gpu_session.sh [all|tests|bench|compile]      # default: all
#
# It uses the machine's own python3 (a CUDA build of torch, with Triton and pytest) and rnnreg
# from src/, not installed. What it writes, under $OUT (else ./gpu-results):
#   device.txt         versions, the GPU, TF32 settings, a Triton launch, torch.nn.LSTM's dtype
#                      under bf16 autocast, nvidia-smi
#   gpu-tests.log      pytest -m gpu: tests/kernels/test_steploop_cuda.py, tests/layers/test_torch_parity.py
#   gpu.jsonl          bench_gpu.py's throughput lines (3 repeats; AWD, medium, small; fp32, then
#                      bf16), each written when measured
#   gpu-compile.jsonl  the torch.compile times at the medium size (and that run's 1-repeat lines)
#   gpu-bench.log      the benchmark runs' progress and exit statuses (124: out of time)
# Limits (seconds) from the environment: TEST_SECONDS (200: the tests compile some 80 Triton
# kernel variants, GRU-D's step and a compiled layer), BENCH_SECONDS (120 for each precision),
# COMPILE_SECONDS (60). A phase that runs out keeps what it wrote; pytest is stopped
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

python3 - > "$out/device.txt" 2>&1 <<'EOF'
import os, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
print("TF32: cuBLAS", torch.backends.cuda.matmul.allow_tf32, "cuDNN", torch.backends.cudnn.allow_tf32,
      "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"))
print(torch.cuda.get_device_name(), torch.cuda.get_device_properties(0))
with torch.autocast("cuda", dtype=torch.bfloat16):
    print("torch.nn.LSTM under bf16 autocast returns",
          torch.nn.LSTM(4, 4).cuda()(torch.randn(2, 1, 4, device="cuda"))[0].dtype)
import triton
import triton.language as tl

@triton.jit
def _add_one(p, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(p + i, tl.load(p + i, mask=i < n) + 1, mask=i < n)

t = torch.zeros(8, device="cuda")
_add_one[(1,)](t, 8, BLOCK=8)
print("triton", triton.__version__, "launch", "ok" if bool((t == 1).all()) else "WRONG")
EOF
nvidia-smi >> "$out/device.txt" 2>&1

if [[ "$phase" == all || "$phase" == tests ]]; then
    timeout -s INT -k 20 "${TEST_SECONDS:-200}" python3 -m pytest -p no:cacheprovider -m gpu -rfEs \
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
    timeout "${COMPILE_SECONDS:-60}" python3 benchmarks/bench_gpu.py --sizes medium \
        --configs plain,zoneout --dtypes fp32 --repeats 1 >> "$out/gpu-compile.jsonl" 2>> "$out/gpu-bench.log"
    echo "compile exit $?" >> "$out/gpu-bench.log"
fi
tail -n 3 "$out/gpu-tests.log" "$out/gpu-bench.log" 2>/dev/null
