"""What the GPU session ran on (gpu_session.sh writes it to device.txt): versions, the GPU, the
TF32 switches, the dtype torch.nn.LSTM returns under bf16 autocast, and one Triton launch.

Each part reports its own failure and the next one still runs, so one missing piece (no Triton,
say) does not hide the rest. Triton compiles a kernel from its source file, which is why this is a
file and not a heredoc fed to ``python3 -`` (``@jit functions should be defined in a Python file``).

    python benchmarks/gpu_probe.py              # on the GPU
    TRITON_INTERPRET=1 python benchmarks/gpu_probe.py --device cpu   # its Triton launch, on a CPU

Always exits 0: it describes the machine, it does not judge it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

import torch


def versions(device: torch.device) -> None:
    print("python", sys.version.split()[0], "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
    print("TF32 by default: cuBLAS", torch.backends.cuda.matmul.allow_tf32, "cuDNN", torch.backends.cudnn.allow_tf32,
          "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"),
          "(bench_gpu.py sets both off unless --tf32)")
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device), torch.cuda.get_device_properties(device))


def lstm_autocast_dtype(device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = torch.nn.LSTM(4, 4).to(device)(torch.randn(2, 1, 4, device=device))[0]
    print("torch.nn.LSTM under bf16 autocast returns", out.dtype)


def triton_launch(device: torch.device) -> None:
    import triton
    import triton.language as tl

    @triton.jit
    def add_one(p, n, BLOCK: tl.constexpr):
        i = tl.arange(0, BLOCK)
        tl.store(p + i, tl.load(p + i, mask=i < n) + 1, mask=i < n)

    t = torch.zeros(8, device=device)
    add_one[(1,)](t, 8, BLOCK=8)
    print("triton", triton.__version__, "launch", "ok" if bool((t == 1).all()) else "WRONG")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu with TRITON_INTERPRET=1")
    device = torch.device(p.parse_args(argv).device)
    for part in (versions, lstm_autocast_dtype, triton_launch):
        try:
            part(device)
        except Exception:  # noqa: BLE001 - a probe reports every failure and goes on
            print(f"{part.__name__} failed:", traceback.format_exc(limit=2).strip().splitlines()[-1])
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
