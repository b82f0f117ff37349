#!/usr/bin/env python3
"""Per-kernel GPU resources of our CUDA sources, as ptxas reports them: registers per thread, static
shared memory per block, local-memory stack frame and spills, for each architecture.

Needs only nvcc (no GPU): it compiles kernels/cuda/*.cu the way the real build does (nvcc -O3, C++20,
--expt-relaxed-constexpr) with `-Xptxas -v` and prints one row per kernel and architecture. Registers and
shared memory bound a kernel's occupancy; a stack frame or a spill means local memory, which the real
build rejects under SEGENGINE_WERROR (cmake/SegengineCuda.cmake).

  tools/dev/cuda_resources.py                      # every source, sm_80 and sm_90
  tools/dev/cuda_resources.py --arch 90 --filter attention
"""
import argparse
import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def compile_report(nvcc, source, archs, workdir):
    """ptxas -v output of one source for the given compute capabilities ("80", "90", ...)."""
    codes = [f"--generate-code=arch=compute_{a},code=sm_{a}" for a in archs]
    obj = os.path.join(workdir, source.stem + ".o")
    cmd = [nvcc, "-std=c++20", "-O3", "-DNDEBUG", "-DSEGENGINE_HAS_CUDA=1", "--expt-relaxed-constexpr",
           f"-I{ROOT}", *codes, "-Xptxas=-v", "-c", str(source), "-o", obj]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{source}: nvcc failed:\n{run.stderr}")
    return run.stderr


def parse(log):
    """[(mangled name, arch, registers, shared bytes, stack bytes, spill bytes)] from ptxas -v output."""
    rows, current = [], None
    for line in log.splitlines():
        entry = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+)'", line)
        if entry:
            current = {"name": entry.group(1), "arch": entry.group(2), "stack": 0, "spill": 0}
            continue
        if current is None:
            continue
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if frame:
            current["stack"] = int(frame.group(1))
            current["spill"] = int(frame.group(2)) + int(frame.group(3))
        used = re.search(r"Used (\d+) registers", line)
        if used:
            shared = re.search(r"(\d+) bytes smem", line)
            rows.append((current["name"], current["arch"], int(used.group(1)),
                         int(shared.group(1)) if shared else 0, current["stack"], current["spill"]))
            current = None
    return rows


def readable(names):
    """Demangled kernel names without the namespaces and parameter lists that every row shares."""
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    short = []
    for name in out:
        name = re.sub(r"se::kernels::cuda::|\(anonymous namespace\)::|conv_gemm::|se::kernels::", "", name)
        depth, cut = 0, len(name)  # drop the parameter list: the first '(' outside template brackets
        for i, ch in enumerate(name):
            depth += ch == "<"
            depth -= ch == ">"
            if ch == "(" and depth == 0:
                cut = i
                break
        short.append(name[:cut].removeprefix("void "))
    return short


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="compute capability, e.g. 90 (repeatable; default 80 and 90)")
    parser.add_argument("--filter", default="", help="only kernels whose readable name matches this regex")
    parser.add_argument("--nvcc", default=shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    archs = args.arch or ["80", "90"]
    if not os.access(args.nvcc, os.X_OK):
        sys.exit(f"nvcc not found at '{args.nvcc}': pass --nvcc PATH")
    sources = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))
    with tempfile.TemporaryDirectory() as workdir, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        logs = list(pool.map(lambda s: compile_report(args.nvcc, s, archs, workdir), sources))
    print(f"{'source':<22} {'arch':<6} {'regs':>4} {'smem B':>7} {'stack B':>7} {'spill B':>7}  kernel")
    local = 0
    for source, log in zip(sources, logs):
        rows = parse(log)
        for row, name in zip(rows, readable([r[0] for r in rows])):
            if not re.search(args.filter, name):
                continue
            _, arch, regs, smem, stack, spill = row
            local += stack > 0 or spill > 0
            print(f"{source.name:<22} {arch:<6} {regs:>4} {smem:>7} {stack:>7} {spill:>7}  {name}")
    print(f"{local} kernel builds with local memory (stack frame or spills)")


if __name__ == "__main__":
    main()
