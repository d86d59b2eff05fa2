"""Benchmark (not a test): the main job's wall time, cold and warm, as medians of interleaved runs.

    python benchmarks/main_job_time.py [--runs=5] [--other=PATH_TO_ANOTHER_CHECKOUT] [-- extra sal-jax flags]

Each run is the README's main job (`sal-jax --config=experiments/configs/digits_mlp.py`) as a fresh
process in a fresh workdir: "cold" with the compilation cache off, "warm" with a cache folder that a first,
uncounted run filled. With --other, the same runs of that checkout (its own sal_jax, this Python)
interleave with this one's (A B A B ...), so that both see the same machine, and the ratio of each pair
is printed too. Prints the wall seconds of each run and their median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main_job(root: Path, cache: str, extra: list[str]) -> float:
    """Wall seconds of one main job from `root`'s sal_jax, in a fresh workdir."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "sal_jax.main", "--config=experiments/configs/digits_mlp.py",
                   f"--workdir={workdir}", f"--compilation_cache={cache}", "--noprogress", *extra]
        start = time.perf_counter()
        subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--other", type=Path, help="another checkout, run interleaved with this one")
    parser.add_argument("extra", nargs="*", help="flags for every run, after --")
    args = parser.parse_args()
    roots = {"this": HERE, **({"other": args.other.resolve()} if args.other else {})}
    with tempfile.TemporaryDirectory() as caches:
        for mode in ("cold", "warm"):
            cache = {name: "" if mode == "cold" else os.path.join(caches, name) for name in roots}
            if mode == "warm":
                for name, root in roots.items():  # fills the cache; not counted
                    main_job(root, cache[name], args.extra)
            times = {name: [] for name in roots}
            for _ in range(args.runs):
                for name, root in roots.items():
                    times[name].append(main_job(root, cache[name], args.extra))
            for name, seconds in times.items():
                print(f"{mode:4} {name:5} median {statistics.median(seconds):6.1f} s  runs "
                      + " ".join(f"{s:.1f}" for s in seconds))
            if args.other:
                ratios = [a / b for a, b in zip(times["this"], times["other"])]
                print(f"{mode:4} this/other median {statistics.median(ratios):.3f}  pairs "
                      + " ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
