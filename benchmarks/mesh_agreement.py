"""How far apart the same SAL ladder ends on different meshes: 1 device, 8 devices, 2 processes x 4.

    python benchmarks/mesh_agreement.py [--family=cnn|mlp] [--epochs=8]

A measurement, not a test: the README's "Reproducibility" bounds come from it. Each mesh runs in its own
worker process on simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count, gloo
collectives for two processes on 127.0.0.1). The ladder is trained on scikit-learn's digits (1,257
examples, batch 64: 19 steps an epoch, 8 epochs = 152 guided steps a level) and each level's final
parameters are compared with the 1-device run's: the largest |difference| and the largest difference
relative to the parameter's own scale (max |a - b| / max |a|, per array).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MESHES = {"1 device": (1, 1), "8 devices": (1, 8), "2 processes x 4": (2, 4)}  # (processes, devices each)


def worker(spec: dict) -> None:
    import jax
    from jax.experimental import multihost_utils

    from sal_jax import parallel
    from sal_jax.config import default_config
    from sal_jax.data import load_dataset
    from sal_jax.ladder import train_ladder
    from sal_jax.models import make_ladder

    config = default_config()
    config.model.family = spec["family"]
    config.model.levels = (1, 2, 3)
    config.model.channels, config.model.width = (6, 12, 20), 64
    config.train.epochs, config.train.batch_size = spec["epochs"], 64
    config.baselines.epoch_matched = config.baselines.time_matched = False
    if spec["processes"] > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        config.parallel.coordinator_address = f"127.0.0.1:{spec['port']}"
        config.parallel.num_processes, config.parallel.process_id = spec["processes"], spec["process_id"]
    parallel.initialize_distributed(config.parallel)
    data = load_dataset(config.data, config.model.family)
    result = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    levels = [multihost_utils.process_allgather(jax.tree.leaves(v), tiled=True) for v in result.levels]
    if jax.process_index() == 0:
        np.savez(spec["out"], **{f"{k}_{i}": leaf for k, leaves in enumerate(levels) for i, leaf in enumerate(leaves)})


def run_mesh(processes: int, devices: int, spec: dict, out: str) -> dict[str, np.ndarray]:
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker",
                               json.dumps({**spec, "processes": processes, "process_id": i, "port": port, "out": out})],
                              env=env) for i in range(processes)]
    if any(proc.wait() for proc in procs):
        sys.exit(f"a worker of the {processes} x {devices} mesh failed")
    return dict(np.load(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cnn", choices=("cnn", "mlp"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    spec = {"family": args.family, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: run_mesh(*mesh, spec, str(Path(tmp) / f"{i}.npz")) for i, (name, mesh) in enumerate(MESHES.items())}
    reference = runs["1 device"]
    print(f"{args.family} ladder (1, 2, 3) on digits, {args.epochs} epochs x 19 steps a level: final parameters "
          f"vs 1 device, max |difference| (max relative to the array's scale)")
    for name, run in runs.items():
        if name == "1 device":
            continue
        cells = []
        for level in range(3):
            keys = [k for k in reference if k.startswith(f"{level}_")]
            absolute = max(float(np.abs(run[k] - reference[k]).max()) for k in keys)
            relative = max(float(np.abs(run[k] - reference[k]).max() / np.abs(reference[k]).max()) for k in keys)
            cells.append(f"level {level + 1}: {absolute:.1e} ({relative:.1e})")
        print(f"  {name}: " + "; ".join(cells))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sal_jax without installing
    main()
