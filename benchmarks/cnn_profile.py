"""Benchmark (not a test): where a CNN train step's time goes on this CPU, per convolution, JAX vs PyTorch.

    python benchmarks/cnn_profile.py [--repeats=5] [--calls=10]

For each 3x3 convolution of the benchmark's student CNN (blocks of 16, 32, 64 channels on 32x32x3, batch
128) it times the three convolutions a train step runs: forward, gradient w.r.t. the kernel, and
gradient w.r.t. the input (not needed for the first layer, whose input is the image). JAX is timed with
NHWC float32 (what flax uses), NCHW float32 (the other layout XLA accepts) and NHWC bfloat16 (this CPU
has AVX512-BF16); PyTorch eager (oneDNN) with NCHW float32. The same interleaved-median timing as
the other benchmarks; the last table puts the convolutions' total next to the whole train step.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sal_jax.host_memory import keep_freed_host_memory

_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repetitions per measurement.")
_CALLS = flags.DEFINE_integer("calls", 10, "Calls per timed repetition.")

BATCH = 128
LAYERS = [(32, 3, 16), (16, 16, 32), (8, 32, 64)]  # (spatial size, input channels, output channels)
PARTS = ("forward", "grad kernel", "grad input")
JAX_VARIANTS = {"JAX NHWC f32": ("NHWC", jnp.float32), "JAX NCHW f32": ("NCHW", jnp.float32),
                "JAX NHWC bf16": ("NHWC", jnp.bfloat16)}


def timed(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            out = fn()
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / calls
    return run


def jax_parts(size: int, c_in: int, c_out: int, layout: str, dtype) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    nhwc = layout == "NHWC"
    x = jnp.asarray(rng.normal(size=(BATCH, size, size, c_in) if nhwc else (BATCH, c_in, size, size)), dtype)
    k = jnp.asarray(rng.normal(size=(3, 3, c_in, c_out) if nhwc else (c_out, c_in, 3, 3)), dtype)
    numbers = ("NHWC", "HWIO", "NHWC") if nhwc else ("NCHW", "OIHW", "NCHW")

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=numbers)

    g = jnp.ones_like(jax.jit(conv)(x, k))
    fns = {"forward": jax.jit(conv),
           "grad kernel": jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0]),
           "grad input": jax.jit(lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0])}
    return {"forward": lambda: fns["forward"](x, k), "grad kernel": lambda: fns["grad kernel"](x, k, g),
            "grad input": lambda: fns["grad input"](x, k, g)}


def torch_parts(size: int, c_in: int, c_out: int) -> dict[str, Callable[[], object]]:
    import torch
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x, k = torch.randn(BATCH, c_in, size, size), torch.randn(c_out, c_in, 3, 3)
    g = torch.ones(BATCH, c_out, size, size)
    conv2d, grad = torch.nn.functional.conv2d, torch.nn.grad

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run
    return {"forward": no_grad(lambda: conv2d(x, k, padding=1)),
            "grad kernel": no_grad(lambda: grad.conv2d_weight(x, k.shape, g, padding=1)),
            "grad input": no_grad(lambda: grad.conv2d_input(x.shape, k, g, padding=1))}


def whole_steps(calls: int) -> dict[str, Callable[[], float]]:
    """The plain student step, JAX and PyTorch (without guidance: the convolutions' own context)."""
    import optax

    import torch_sal
    from common import dataset, device_batches, host_batches, setups, step_timer, step_variant

    setup = setups()["cnn"]
    data = dataset(setup, setup.batch * 4)
    batches = device_batches(setup, data)
    tx = optax.adam(1e-3)
    jax_step = step_timer(*step_variant(setup, tx, None, None, batches[0]["x"]), batches, calls)
    torch_step = torch_sal.step_timer("cnn", host_batches(batches), calls, guided=False)
    return {"JAX NHWC f32": jax_step, "PyTorch eager": torch_step}


def main(argv):
    del argv
    keep_freed_host_memory()  # as the other benchmarks (via common.py) and the CLI do
    timers = {}
    for size, c_in, c_out in LAYERS:
        for name, (layout, dtype) in JAX_VARIANTS.items():
            for part, fn in jax_parts(size, c_in, c_out, layout, dtype).items():
                timers[(size, c_in, c_out, name, part)] = timed(fn, _CALLS.value)
        for part, fn in torch_parts(size, c_in, c_out).items():
            timers[(size, c_in, c_out, "PyTorch eager", part)] = timed(fn, _CALLS.value)
    for name, fn in whole_steps(_CALLS.value).items():
        timers[("step", name)] = fn
    for fn in timers.values():
        fn()  # compile and warm up
    times = {key: [] for key in timers}
    for _ in range(_REPEATS.value):
        for key, fn in timers.items():
            times[key].append(fn())
    t = {key: statistics.median(v) * 1e3 for key, v in times.items()}

    names = [*JAX_VARIANTS, "PyTorch eager"]
    print("| convolution (batch 128) | part | " + " | ".join(f"{n} (ms)" for n in names)
          + " | JAX NHWC f32 / PyTorch time |")
    print("|" + " --- |" * (len(names) + 3))
    needed = {name: 0.0 for name in names}
    for size, c_in, c_out in LAYERS:
        for part in PARTS:
            row = [t[(size, c_in, c_out, n, part)] for n in names]
            if not (part == "grad input" and c_in == 3):  # the image needs no gradient
                for n, v in zip(names, row):
                    needed[n] += v
            print(f"| {size}x{size}x{c_in} -> {c_out} | {part}"
                  + (" (not needed in training)" if part == "grad input" and c_in == 3 else "")
                  + " | " + " | ".join(f"{v:.2f}" for v in row) + f" | {row[0] / row[-1]:.2f} |")
    print("| all a train step needs | | " + " | ".join(f"{needed[n]:.2f}" for n in names)
          + f" | {needed[names[0]] / needed['PyTorch eager']:.2f} |")
    step_jax, step_torch = t[("step", "JAX NHWC f32")], t[("step", "PyTorch eager")]
    print(f"\nwhole plain student step: JAX {step_jax:.2f} ms, PyTorch eager {step_torch:.2f} ms "
          f"(PyTorch time / JAX time {step_torch / step_jax:.2f}); the convolutions above are "
          f"{needed['JAX NHWC f32'] / step_jax:.0%} of the JAX step and "
          f"{needed['PyTorch eager'] / step_torch:.0%} of the PyTorch step.")
    print(f"cores available: {len(os.sched_getaffinity(0))}; XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")


if __name__ == "__main__":
    app.run(main)
