"""Benchmark (not a test): seeds trained one at a time vs as members of one program (config.train.ensemble).

    python benchmarks/members_time.py [--config=experiments/configs/digits_mlp.py] [--seeds=4]
        [--ensemble=4] [--runs=3] [-- extra sal-jax flags]

Runs the command line on the config with --config.num_seeds=SEEDS, once with --config.train.ensemble=1
(sequential) and once with ENSEMBLE (members), alternately RUNS times (A B A B ...: both see the same
machine), each as a fresh process in a fresh workdir, with the command line's default persistent
compilation cache (so from the second run of each way on, its programs come from the cache; pass
--compilation_cache= after -- for cold runs). Per run: the wall
seconds of the process, the SAL training time of all seeds (sequential: the sum over seeds; members: the
program's, shared by its members, summed over groups), and the process's peak memory (max RSS). Prints
each run, the medians, and the medians of the paired ratios members / sequential.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# The command line in a child that reports its own peak memory (ru_maxrss, KiB on Linux) when it ends.
CHILD = ("import resource, runpy, sys\n"
         "sys.argv = sys.argv[1:]\n"
         "try:\n"
         "    runpy.run_module('sal_jax.main', run_name='__main__')\n"
         "finally:\n"
         "    print('max_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def sal_train_time(results: dict) -> float:
    """SAL's training seconds over all seeds: members of one group share one clock, so a group counts once."""
    total = 0.0
    for cell in results["cells"]:
        seen = set()
        for record in cell["runs"]:
            group = tuple(run["train_time"] for run in record["sal"])  # members' runs share their times
            if group not in seen:
                seen.add(group)
                total += record["sal_train_time"]
    return total


def one_run(config: str, seeds: int, ensemble: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-c", CHILD, "sal-jax", f"--config={config}", f"--workdir={workdir}",
                   f"--config.num_seeds={seeds}", f"--config.train.ensemble={ensemble}", "--noprogress", *extra]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)}, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1]}")
        with open(os.path.join(workdir, "results.json")) as f:
            results = json.load(f)
    rss = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("max_rss_kib"))
    return {"wall": wall, "sal_train": sal_train_time(results), "max_rss_mib": rss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/configs/digits_mlp.py")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="flags for every run, after --")
    args = parser.parse_args()
    ways = {"sequential": 1, "members": args.ensemble}
    samples = {way: [] for way in ways}
    for _ in range(args.runs):
        for way, ensemble in ways.items():
            sample = one_run(args.config, args.seeds, ensemble, args.extra)
            samples[way].append(sample)
            print(f"{way:10} wall {sample['wall']:6.1f} s  SAL training {sample['sal_train']:6.2f} s  "
                  f"peak memory {sample['max_rss_mib']:6.0f} MiB", flush=True)
    for key, what in (("wall", "wall (s)"), ("sal_train", "SAL training (s)"), ("max_rss_mib", "peak memory (MiB)")):
        medians = {way: statistics.median(s[key] for s in runs) for way, runs in samples.items()}
        ratios = [m[key] / s[key] for s, m in zip(samples["sequential"], samples["members"])]
        print(f"{what:18} sequential {medians['sequential']:8.2f}  members {medians['members']:8.2f}  "
              f"members/sequential median {statistics.median(ratios):.3f} (pairs "
              + " ".join(f"{r:.3f}" for r in ratios) + ")")


if __name__ == "__main__":
    main()
