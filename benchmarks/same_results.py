"""Check (not a test): two checkouts of sal_jax compute the same results, bit for bit, on this machine.

    python benchmarks/same_results.py --other=PATH_TO_ANOTHER_CHECKOUT [--no-main-job]

For refactorings that must change nothing (issue #25): each checkout, as a fresh process with its own
sal_jax, trains one quick two-level ladder (SAL levels 1 and 2 and the epoch-matched plain baseline,
2 epochs, no time-matched baseline) of each family -- MLP, GLAI, SET/NPSET, CNN (BatchNorm), ViT, GRU,
Transformer, and an NNX level with BatchNorm and Dropout -- and the README's main job
(experiments/configs/digits_mlp.py). Compared: every history row but its clock (`train_time`), and the
main job's results.json runs likewise (wall and training times left out). Prints one line per family and
exits 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

FAMILIES = ("mlp", "glai", "set_mlp", "cnn", "vit", "rnn", "transformer", "nnx")

# Run inside each checkout (its sal_jax on the path): the families' histories as JSON on stdout.
CHILD = r'''
import json, sys
import numpy as np
from sal_jax.config import default_config
from sal_jax.data import load_dataset
from sal_jax.data.arrays import ArrayDataset
from sal_jax.ladder import train_ladder
from sal_jax.models import make_ladder

rng = np.random.default_rng(0)
tokens = lambda n: rng.integers(1, 50, (n, 12)).astype(np.int32)
text = ArrayDataset("tokens", tokens(200), rng.integers(0, 3, 200).astype(np.int32), tokens(60),
                    rng.integers(0, 3, 60).astype(np.int32), num_classes=3, vocab_size=50)
out = {}
for family in sys.argv[1].split(","):
    config = default_config()
    config.model.family = "mlp" if family == "nnx" else family
    config.model.levels, config.model.width, config.model.channels = (1, 2), 16, (4, 8)
    config.model.dim, config.model.heads, config.model.hidden, config.model.embed_dim = 16, 2, 16, 16
    config.model.patch = 2
    config.train.epochs, config.train.batch_size, config.baselines.time_matched = 2, 32, False
    if family in ("rnn", "transformer"):
        data = text
    else:
        full = load_dataset(config.data, config.model.family)
        data = ArrayDataset(full.name, full.x_train[:300], full.y_train[:300], full.x_test[:100], full.y_test[:100],
                            num_classes=10)
    if family == "nnx":
        sys.path.insert(0, "tests")
        from nnx_models import resnet_ladder
        levels = resnet_ladder((1, 2), 64, 16, 10)
    else:
        levels = make_ladder(config.model, data.num_classes, data.vocab_size)
    result = train_ladder(levels, data, config)
    out[family] = [[{k: v for k, v in row.items() if k != "train_time"} for row in run.history]
                   for run in [*result.sal, result.plain_epoch_matched]]
print(json.dumps(out))
'''


def families(root: Path) -> dict:
    command = [sys.executable, "-c", CHILD, ",".join(FAMILIES)]
    done = subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def untimed(value):
    """results.json without its clocks: wall and training times, compile times."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if "time" not in k}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def main_job(root: Path) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "sal_jax.main", "--config=experiments/configs/digits_mlp.py",
                   f"--workdir={workdir}", "--noprogress"]
        subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True,
                       capture_output=True)
        with open(os.path.join(workdir, "results.json")) as f:
            return untimed(json.load(f)["cells"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--no-main-job", action="store_true", help="the families only")
    args = parser.parse_args()
    roots = (HERE, args.other.resolve())
    ours, theirs = (families(root) for root in roots)
    same = True
    for family in FAMILIES:
        equal = ours[family] == theirs[family]
        same &= equal
        print(f"{family:12} {'identical' if equal else 'DIFFERENT'} ({sum(len(h) for h in ours[family])} rows)")
    if not args.no_main_job:
        equal = main_job(roots[0]) == main_job(roots[1])
        same &= equal
        print(f"{'main job':12} {'identical' if equal else 'DIFFERENT'} (results.json, clocks left out)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
