"""Path-norm pruning of the trained plain GLAI levels of a glai.py run (issue #14): writes RUN_DIR/pruning.json.

    python experiments/glai_pruning.py RUN_DIR [KEEP ...]    (default KEEP: 0.75 0.5 0.25 0.1)

For every training-set size and seed of the run: its plain (epoch-matched) GLAI bottom level, read from the
run's checkpoints (`load_level(..., kind="plain_epoch_matched")`), pruned to each kept fraction of the
hidden units of every layer (`sal_jax.glai.prune_units`) and of the value weights of every layer
(`prune_weights`), by path norm, without retraining (the structure stays whole), and evaluated on the
run's test set. experiments/glai_results.py judges the result.
"""
from __future__ import annotations

import json
import math
import os
import sys

import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from glai_results import paired_cells  # noqa: E402
from make_results import read_results  # noqa: E402
from sal_jax import glai, report  # noqa: E402
from sal_jax.checkpoint import load_level  # noqa: E402
from sal_jax.data import load_dataset  # noqa: E402
from sal_jax.levels import predict  # noqa: E402


def test_accuracy(module, variables, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    logits = jax.jit(lambda v, x: predict(module, v, x))
    correct = sum(int(np.sum(np.argmax(logits(variables, x[i:i + batch]), -1) == y[i:i + batch]))
                  for i in range(0, len(x), batch))
    return correct / len(x)


def pruned_versions(module, variables, fractions: list[float]) -> dict[str, object]:
    """{"none": the level, "units <f>": prune_units keeping f of each layer's units, "weights <f>":
    prune_weights keeping f of each layer's weights}."""
    versions = {"none": variables}
    for f in fractions:
        kept = [max(1, math.floor(f * module.width))] * module.hidden_layers
        versions[f"units {f}"] = glai.prune_units(variables, module.hidden_layers, kept)
        versions[f"weights {f}"] = glai.prune_weights(variables, module.hidden_layers, f)
    return versions


def nonzero_params(variables) -> int:
    """What a pruned level needs stored: its nonzero values and biases, and its whole structure."""
    return sum(int(np.count_nonzero(leaf)) for leaf in jax.tree.leaves(variables["params"])) + \
        sum(int(np.size(leaf)) for leaf in jax.tree.leaves(variables[glai.STRUCTURE]))


def main(run_dir: str, *keep: str) -> None:
    fractions = [float(k) for k in keep or ("0.75", "0.5", "0.25", "0.1")]
    results = read_results(run_dir)
    config = ml_collections.ConfigDict(results["config"])
    data = load_dataset(config.data, "glai")  # the test split does not depend on the training-set size
    out = {"keep": fractions, "cells": {}}
    for size, cell, _ in paired_cells(results):
        accuracy, params = {}, {}
        for run in cell["runs"]:
            directory = os.path.join(run_dir, "checkpoints", report.cell_tag(cell), f"seed_{run['seed']}", "sal")
            module, variables = load_level(directory, len(config.model.levels), kind="plain_epoch_matched")
            for name, pruned in pruned_versions(module, variables, fractions).items():
                accuracy.setdefault(name, []).append(test_accuracy(module, pruned, data.x_test, data.y_test))
                params.setdefault(name, []).append(nonzero_params(pruned))
        out["cells"][size] = {"accuracy": accuracy, "params": {k: int(np.mean(v)) for k, v in params.items()}}
        print(size, {k: round(float(np.mean(v)), 4) for k, v in accuracy.items()}, file=sys.stderr)
    with open(os.path.join(run_dir, "pruning.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
