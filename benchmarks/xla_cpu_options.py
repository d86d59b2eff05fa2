"""Benchmark (not a test): what XLA's CPU options do to SAL's train steps, next to PyTorch eager.

    python benchmarks/xla_cpu_options.py [--families=cnn] [--variants=default,onednn,...] [--repeats=5]

XLA flags are read once per process, so each variant runs in its own worker process (XLA_FLAGS set in
its environment), and so does the PyTorch reference. All workers start and compile first; then the
parent asks them in turn (A B C A B C ...) to time `--steps` steps and takes the median per worker, so
the ratios come from one run on the same, equally loaded machine. Each worker also reports the loss of
the first guided step from the same initial state, to show how far a variant moves the numbers.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

# name -> extra XLA_FLAGS (the flags this jaxlib accepts; see XLA's debug_options_flags).
VARIANTS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "no_eigen_threads": "--xla_cpu_multi_thread_eigen=false",
    "xnn_graph_fusion": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "xnn_dot_fusion": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
}

_FAMILIES = flags.DEFINE_list("families", ["mlp", "cnn", "rnn"], "Level families to measure.")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"XLA variants to measure, from {list(VARIANTS)}.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch eager reference (needs torch).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repetitions per worker.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per timed repetition; 0 = the family's own (~0.3 s).")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run as a worker ('jax' or 'torch') for --families[0].")


def jax_worker(family: str, steps: int) -> None:
    """Compiles the guided and plain steps, then answers 'guided'/'plain' lines with seconds per step."""
    import jax
    import optax

    from common import bench_config, dataset, device_batches, setups, step_timer, step_variant
    from sal_jax.guidance import make_guidance

    setup = setups()[family]
    steps = steps or setup.timed_steps
    data = dataset(setup, setup.batch * 4)
    batches = device_batches(setup, data)
    x0, tx = batches[0]["x"], optax.adam(1e-3)
    teacher_vars = dict(setup.teacher.init(jax.random.key(1), x0))
    guidance = make_guidance(setup.student, setup.teacher, x0, bench_config(setup).guidance, 1000)
    step, state, teacher = step_variant(setup, tx, guidance, teacher_vars, x0)
    _, metrics = step(state, teacher, batches[0])  # the first guided step's loss, from the initial state
    timers = {name: step_timer(*step_variant(setup, tx, g, teacher_vars, x0), batches, steps)
              for name, g in (("guided", guidance), ("plain", None))}
    for timer in timers.values():
        timer()  # compile and warm up before the parent starts timing
    print(json.dumps({"ready": True, "first_loss": float(metrics["loss"])}), flush=True)
    serve(timers)


def torch_worker(family: str, steps: int) -> None:
    import torch_sal
    from common import dataset, device_batches, host_batches, setups

    setup = setups()[family]
    steps = steps or setup.timed_steps
    timer = torch_sal.step_timer(family, host_batches(device_batches(setup, dataset(setup, setup.batch * 4))), steps)
    timer()
    print(json.dumps({"ready": True, "first_loss": float("nan")}), flush=True)
    serve({"guided": timer})


def serve(timers: dict) -> None:
    for line in sys.stdin:
        print(json.dumps({"seconds": timers[line.strip()]()}), flush=True)


def start_worker(kind: str, family: str, xla_flags: str) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=" ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), xla_flags])))
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker={kind}", f"--families={family}",
           f"--steps={_STEPS.value}"]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(worker: subprocess.Popen, line: str | None = None) -> dict:
    if line is not None:
        worker.stdin.write(line + "\n")
        worker.stdin.flush()
    reply = worker.stdout.readline()
    if not reply:
        raise RuntimeError(f"worker {worker.args} died (exit code {worker.wait()})")
    return json.loads(reply)


def measure(family: str) -> list[str]:
    workers = {name: start_worker("jax", family, VARIANTS[name]) for name in _VARIANTS.value}
    if _TORCH.value:
        workers["pytorch eager"] = start_worker("torch", family, "")
    first_loss = {name: ask(w)["first_loss"] for name, w in workers.items()}  # waits for every compile
    jobs = [(name, kind) for name in workers for kind in (("guided",) if name == "pytorch eager" else ("guided", "plain"))]
    times = {job: [] for job in jobs}
    for _ in range(_REPEATS.value):
        for name, kind in jobs:
            times[(name, kind)].append(ask(workers[name], kind)["seconds"])
    for w in workers.values():
        w.stdin.close()
        w.wait()
    med = {job: statistics.median(v) for job, v in times.items()}
    base = med[("default", "guided")] if ("default", "guided") in med else None
    rows = []
    for name in workers:
        guided, plain = med[(name, "guided")], med.get((name, "plain"))
        rows.append(f"| {family} | {name} | {guided * 1e3:.2f} | " + (f"{plain * 1e3:.2f}" if plain else "—")
                    + f" | {base / guided:.2f} | "
                    + (f"{med[('pytorch eager', 'guided')] / guided:.2f}" if "pytorch eager" in workers else "—")
                    + " | " + ("—" if name == "pytorch eager" else f"{abs(first_loss[name] - first_loss['default']):.1e}")
                    + " |")
    return rows


def main(argv):
    del argv
    if _WORKER.value:
        (jax_worker if _WORKER.value == "jax" else torch_worker)(_FAMILIES.value[0], _STEPS.value)
        return
    rows = ["| family | variant | guided step (ms) | plain step (ms) | speed-up vs default (guided) "
            "| PyTorch time / this time (guided) | first-step loss change vs default |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for family in _FAMILIES.value:
        rows += measure(family)
        print(f"{family} done", file=sys.stderr)
    print("\n".join(rows))
    print(f"\ncores available: {len(os.sched_getaffinity(0))}; XLA_FLAGS of the parent: {os.environ.get('XLA_FLAGS', '')!r}")


if __name__ == "__main__":
    app.run(main)
