"""A training run for the checkpoint tests, run as a subprocess that kills itself at a chosen point.

    python tests/checkpoint_child.py DIR OUT.npz MODE AT [ROUNDS] [STEPS_PER_CALL] [FAMILY] [WIDTH]
MODE "kill" sends SIGKILL to itself right after the training call that reaches step AT (and after any
save at its end); MODE "term" (or "int") sends SIGTERM (SIGINT) there (the run must save and stop at the
end of the next call); MODE "term_in_setup" sends SIGTERM as this
process starts computing a teacher cache for the AT-th time (a phase's setup: the run must stop there,
before that phase's first step); MODE "kill_after_level" sends SIGKILL right after the
phase-end checkpoint of phase AT is written; MODE "none" runs to the end. ROUNDS (default 1) is
config.train.rounds; STEPS_PER_CALL (default 1) config.train.steps_per_call; FAMILY (default mlp)
config.model.family ("glai": each level's structure is frozen within its 3 epochs; "set_mlp": sparse
levels evolved and pruned between epochs; "nnx": NNX residual levels with BatchNorm and Dropout,
tests/nnx_models.py). WIDTH (default 16) is config.model.width. On completion the
final variables of every phase (every round of every level, then the baseline) are written to OUT.npz,
their histories to OUT.npz.json. TensorBoard events go to DIR_tensorboard.
"""
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

# tests/ (conftest) and the repo root (sal_jax), so the child runs whether or not sal_jax is installed
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import jax  # noqa: E402
from conftest import blobs  # noqa: E402

from sal_jax import checkpoint, level_loop  # noqa: E402
from sal_jax.config import default_config  # noqa: E402
from sal_jax.ladder import train_ladder  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402
from nnx_models import resnet_ladder  # noqa: E402


STEP_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def child_config(rounds: int = 1, steps_per_call: int = 1, family: str = "mlp", width: int = 16):
    c = default_config()
    c.model.family = "mlp" if family == "nnx" else family  # "nnx": the user's own levels, built in main
    c.glai.flip_threshold, c.glai.max_structure_fraction = 0.05, 0.67  # frozen after epoch 1 or 2 of 3
    c.model.epsilon, c.sparse.prune_fraction = 2.0, 0.5  # set_mlp: sparse layers, half the units pruned
    c.train.rounds = rounds
    # One step per call unless asked: a kill or a signal then lands after exactly the step named (calls of
    # several steps act at their ends: test_checkpoint's chunked test).
    c.train.steps_per_call = steps_per_call
    c.model.levels, c.model.width = (1, 2, 3), width
    c.train.epochs, c.train.batch_size, c.train.learning_rate = 3, 32, 3e-2
    c.baselines.compute_matched = False  # the phases these tests count are SAL's and the epoch-matched one
    c.baselines.time_matched = False  # its length depends on the clock; everything else is exact
    c.checkpoint.every_steps = 5
    return c


def phase_leaves(result) -> list:
    """The final variables of every phase, in training order: a round's variables must stay readable
    after later rounds trained (they once were donated to the next round's first step)."""
    return jax.tree.leaves([[run.variables for run in result.sal], result.plain_epoch_matched.variables])


def phase_histories(result) -> list:
    """Every phase's history without its clock (train_time), in training order: what must reproduce."""
    runs = [*result.sal, result.plain_epoch_matched]
    return [[{k: v for k, v in row.items() if k != "train_time"} for row in run.history] for run in runs]


def main(directory, out, mode, at, rounds="1", steps_per_call="1", family="mlp", width="16"):
    at, config = int(at), child_config(int(rounds), int(steps_per_call), family, int(width))
    original_call, original_save = checkpoint.PhaseHook.after_call, checkpoint.RunCheckpointer.save
    sent = []

    def after_call(self, loop, call):  # the signal goes after the first call that reaches `at`
        original_call(self, loop, call)
        if self.store.run_step >= at and mode in STEP_SIGNALS and not sent:
            sent.append(self.store.run_step)
            os.kill(os.getpid(), STEP_SIGNALS[mode])

    caches = []

    def teacher_cache(*args, **kwargs):
        caches.append(None)
        if mode == "term_in_setup" and len(caches) == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_cache(*args, **kwargs)

    def save(self, snapshot):
        original_save(self, snapshot)
        if mode == "kill_after_level" and snapshot.state is None and len(snapshot.done) == at:
            self.manager.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.PhaseHook.after_call, checkpoint.RunCheckpointer.save = after_call, save
    original_cache, level_loop.teacher_cache = level_loop.teacher_cache, teacher_cache
    data = blobs()
    levels = (resnet_ladder(config.model.levels, 8, 16, 3) if family == "nnx"
              else make_ladder(config.model, 3))
    try:
        result = train_ladder(levels, data, config, checkpoint_dir=directory,
                              log_dir=f"{directory}_tensorboard")
    except checkpoint.Preempted as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    np.savez(out, *[np.asarray(leaf) for leaf in phase_leaves(result)])
    with open(f"{out}.json", "w") as f:
        json.dump(phase_histories(result), f)


if __name__ == "__main__":
    main(*sys.argv[1:])
