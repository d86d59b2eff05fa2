"""Members (sal_jax.members) against the lone path (sal_jax.chunks) on the main job's bottom level, a 16x64 tanh
MLP trained plain at batch 64 (common.setups()["mlp_main"]): kernels per member-step in the compiled
program, and milliseconds per member-step.

    python benchmarks/member_kernels.py [--steps=200] [--repeats=5] [--members=1,2,4,8]

Kernels: the instructions of the compiled n-step program's loop body (its optimized HLO) that run as
kernels -- everything but parameter, get-tuple-element, tuple, constant and bitcast -- and how many of them
are fusions; per member-step = per step / members. Time: one call of --steps steps (the program the level
loop runs), median of --repeats interleaved repetitions after a warm-up, per member-step, and its ratio to
the lone path's time per step ("of as many lone runs"; the lone runs on one device). Each device count runs
in its own process (XLA_FLAGS=--xla_force_host_platform_device_count): 1 device, and 2 host devices with the
members split over the `ensemble` axis (one device per core on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}
KERNEL_MEMBERS = (1, 64)


def loop_body_ops(hlo: str) -> list[str]:
    """The op of every instruction of the (first) while loop's body computation in optimized HLO text."""
    body = re.search(r"\bwhile\(.*?body=%?([\w.\-]+)", hlo).group(1)
    block = re.search(rf"^%?{re.escape(body)} .*?\{{\n(.*?)^\}}", hlo, re.M | re.S).group(1)
    return [m.group(1) for line in block.splitlines() if (m := re.search(r"= .*?\s([a-z][a-z0-9\-]*)\(", line))]


def kernel_count(compiled) -> dict[str, int]:
    ops = [op for op in loop_body_ops(compiled.as_text()) if op not in TRIVIAL]
    return {"kernels": len(ops), "fusions": ops.count("fusion")}


def worker(spec: dict) -> dict:
    """Runs in a process with spec["devices"] host devices; returns its measurements."""
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
    import jax
    import numpy as np

    from common import dataset, interleaved, setups
    from sal_jax import chunks, members, parallel
    from sal_jax.config import default_config
    from sal_jax.optimizers import make_optimizer
    from sal_jax.step import init_state, train_step_fn

    setup, steps = setups()["mlp_main"], spec["steps"]
    student, batch = setup.student, setup.batch
    data = dataset(setup, steps * batch)
    config = default_config()
    config.parallel.data = 1  # the lone path on one device: lone runs are run one after another

    def lone():
        tx = make_optimizer(config.train)
        state = init_state(student, tx, jax.random.key(0), data.x_train[:batch])
        shardings = parallel.step_shardings(parallel.make_mesh(config.parallel), state)
        split = parallel.SplitBatches({"x": data.x_train, "y": data.y_train}, batch, shardings.batch, 1024.0)
        step = train_step_fn(student, tx)
        train = chunks.make_train_chunk(step, split, shardings)
        zeros = chunks.zero_sums(chunks.trace_step(step, split, state, None)[1][1], shardings)
        plan, offset = split.plan(np.random.default_rng(0).permutation(len(data.x_train)), 0, steps)
        holder = [jax.device_put(state, shardings.state)]
        args = lambda: (holder[0], None, split.source, plan, offset, steps, zeros)

        def run() -> float:
            start = time.perf_counter()
            holder[0], sums, _ = train(*args())
            jax.block_until_ready(sums)
            return time.perf_counter() - start
        return train, args, run

    def ensemble(m: int):
        mesh = members.make_member_mesh(spec["devices"]) if spec["devices"] > 1 and m > 1 else None
        tx = members.member_optimizer(config.train)
        states = members.initial_states(student, tx, data.x_train[:batch], range(m), 1)
        inputs = members.MemberInputs()
        states, inputs = jax.device_put((states, inputs), None if mesh is None else members.member_shardings(mesh).members)
        step = members.member_step_fn(student, tx)
        train = members.make_member_train(step, mesh)
        source = members.device_source({"x": data.x_train, "y": data.y_train}, mesh)
        orders = [np.random.default_rng(i).permutation(len(data.x_train)) for i in range(m)]
        plans = members.member_plans(len(data.x_train), batch, orders, steps)
        plans = jax.device_put(plans, None if mesh is None else members.member_shardings(mesh).plans)
        sums, health = members.member_zeros(step, states, inputs, source, mesh)
        holder = [states]
        args = lambda: (holder[0], inputs, source, plans, 0, steps, sums, health)

        def run() -> float:
            start = time.perf_counter()
            holder[0], out, _ = train(*args())
            jax.block_until_ready(out)
            return time.perf_counter() - start
        return train, args, run

    out: dict = {"devices": spec["devices"], "kernels": {}}
    if spec["devices"] == 1:
        train, args, _ = lone()
        out["kernels"]["lone"] = kernel_count(train.lower(*args()).compile())
        for m in KERNEL_MEMBERS:
            train, args, _ = ensemble(m)
            out["kernels"][m] = kernel_count(train.lower(*args()).compile())
    runs = {"lone": lone()[2], **{m: ensemble(m)[2] for m in spec["members"]}}
    seconds = interleaved(runs, spec["repeats"])
    out["ms_per_member_step"] = {k: 1e3 * t / (steps * (1 if k == "lone" else k)) for k, t in seconds.items()}
    return out


def run_worker(devices: int, args: argparse.Namespace) -> dict:
    spec = {"devices": devices, "steps": args.steps, "repeats": args.repeats, "members": args.members}
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1], object_hook=lambda d: {
        int(k) if k.isdigit() else k: v for k, v in d.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--members", type=lambda s: [int(m) for m in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    one, two = run_worker(1, args), run_worker(2, args)
    kernels = one["kernels"]
    print(f"Kernels in the compiled loop body (16x64 tanh MLP, batch 64, plain; lone: "
          f"{kernels['lone']['kernels']} kernels, {kernels['lone']['fusions']} fusions per step)\n")
    print("| members | kernels per step | fusions per step | kernels per member-step |")
    print("| --- | --- | --- | --- |")
    for m in KERNEL_MEMBERS:
        k = kernels[m]
        print(f"| {m} | {k['kernels']} | {k['fusions']} | {k['kernels'] / m:.2f} |")
    print(f"\nms per member-step ({args.steps} steps a call, median of {args.repeats}; ratio: of as many lone runs)\n")
    print("| members | 1 device | ratio | 2 devices (ensemble axis) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| lone | {one['ms_per_member_step']['lone']:.3f} | 1.00 | {two['ms_per_member_step']['lone']:.3f} | 1.00 |")
    for m in args.members:
        a, b = one["ms_per_member_step"][m], two["ms_per_member_step"][m]
        print(f"| {m} | {a:.3f} | {a / one['ms_per_member_step']['lone']:.2f} | {b:.3f} | "
              f"{b / two['ms_per_member_step']['lone']:.2f} |")


if __name__ == "__main__":
    main()
