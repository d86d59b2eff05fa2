"""The compute-matched baseline (sal_jax.compute_budget): FLOPs counted by XLA as a hand count says, the
same on 1 and 8 devices and under load, and a plain run of exactly the steps SAL's FLOPs buy."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from compute_budget_child import ladder_config, ladder_counts
from conftest import blobs
from sal_jax import compute_budget, level_loop
from sal_jax.compute_budget import LevelFlops, step_budget, xla_flops
from sal_jax.config import default_config
from sal_jax.hooks import Hook
from sal_jax.ladder import ladder_phases, train_ladder, train_members
from sal_jax.level_loop import LevelPlan
from sal_jax.models import make_ladder
from sal_jax.models.mlp import MLP
from sal_jax.records import LevelRun

ROOT = Path(__file__).resolve().parents[1]


def spec(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def test_a_dot_and_its_gradient_count_two_flops_per_multiply_add():
    """XLA counts a (B, I) x (I, O) product as 2·B·I·O; the gradient of sum(x @ w) in w is one such product."""
    b, i, o = 8, 16, 4
    assert xla_flops(lambda w, x: x @ w, spec(i, o), spec(b, i)) == 2 * b * i * o
    assert xla_flops(jax.grad(lambda w, x: jnp.sum(x @ w)), spec(i, o), spec(b, i)) == 2 * b * i * o
    assert xla_flops(lambda w, x: x @ w, spec(i, o), spec(3 * b, i)) == 3 * 2 * b * i * o  # linear in the batch


def mlp_step_flops(batch: int, width: int, dim: int, classes: int) -> int:
    """One training step of a 1-hidden-layer ReLU MLP (dim -> width -> classes), SGD with momentum."""
    config = default_config()
    config.train.batch_size, config.train.optimizer = batch, "sgd"
    data = blobs(n_train=64, dim=dim, classes=classes)
    return compute_budget.level_flops(LevelPlan(MLP(1, width, classes), 1), data, config).step


@pytest.mark.parametrize("dim, classes", [(8, 3), (16, 5)])
def test_an_mlp_steps_flops_follow_the_hand_count(dim, classes):
    """flops(B, W) = B·(a + W·(4·dim + 6·classes + 5)) + c + W·(6·params per unit − 1), exactly (jax 0.10.2):
    per example and hidden unit the dots are 2·dim + 2·classes forward, 2·dim + 2·classes for the kernels'
    gradients and 2·classes for the hidden gradient, plus 5 elementwise FLOPs (bias, ReLU and their
    gradients); per parameter SGD with momentum and the gradient-norm metrics cost 6. Linear in the batch."""
    def per_example(width):  # the step's cost per example (slope in the batch), and its cost per step
        small, large, larger = (mlp_step_flops(b, width, dim, classes) for b in (8, 16, 24))
        assert larger - large == large - small  # exactly linear in the batch size
        return (large - small) // 8, 2 * small - large

    (slope4, fixed4), (slope8, fixed8), (slope12, fixed12) = map(per_example, (4, 8, 12))
    assert slope12 - slope8 == slope8 - slope4 == 4 * (4 * dim + 6 * classes + 5)
    assert fixed12 - fixed8 == fixed8 - fixed4 == 4 * (6 * (dim + 1 + classes) - 1)


def test_the_step_budget_rounds_down_and_counts_what_a_phase_continues():
    flops = LevelFlops(step=30, teacher_pass=0)
    assert step_budget(100, flops) == 3  # floor(100 / 30): never a step past the budget
    assert step_budget(29, flops) == 1   # a training that starts from nothing runs one step
    earlier = LevelRun("structure", 1, 1, {}, [], 0.0, steps=2, compiles={}, step_flops=20, flops=40)
    assert step_budget(100, flops, earlier) == 2 + 2  # (100 - 40) // 30 more
    assert step_budget(30, flops, earlier) == 2      # spent already: nothing more
    assert step_budget(100, LevelFlops(step=30, teacher_pass=50), None) == 1


def test_the_compute_matched_baseline_trains_the_steps_sals_flops_buy(data):
    config = ladder_config()
    result = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    plain, steps_per_epoch = result.plain_compute_matched, 150 // 32
    for run in result.sal:  # its steps' FLOPs, and below the top the teacher cache's pass (5 batches of 32), once
        teacher = run.flops - run.step_flops * run.steps
        assert run.steps == 2 * steps_per_epoch and (teacher == 0) == (run.level == 1) and teacher % 5 == 0
    assert plain.flop_budget == result.sal_flops == sum(run.flops for run in result.sal)
    assert plain.steps == plain.step_budget == result.sal_flops // plain.step_flops
    assert plain.flops == plain.steps * plain.step_flops <= plain.flop_budget < plain.flops + plain.step_flops
    assert len(plain.history) == -(-plain.steps // steps_per_epoch) and "test_accuracy" in plain.history[-1]
    assert plain.compiles == {"train": 1, "eval": 1}  # one program, whatever the budget


def test_config_off_means_no_compute_matched_phase():
    config = default_config()
    assert [p.kind for p in ladder_phases(2, config)][2:] == ["plain_epoch_matched", "plain_time_matched",
                                                              "plain_compute_matched"]
    config.baselines.compute_matched = False
    assert "plain_compute_matched" not in [p.kind for p in ladder_phases(2, config)]


def test_the_same_step_count_on_8_devices_and_under_load(monkeypatch):
    """The budget is a function of the configs: 8 simulated devices (a subprocess), and one busy core with a
    slowed training call, give the 1-device run's FLOPs and steps."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    child = subprocess.Popen([sys.executable, str(ROOT / "tests" / "compute_budget_child.py")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    alone = ladder_counts()
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    busy, train = threading.Thread(target=spin), level_loop.LoneCalls.train

    def slow_train(self, state, progress, n):
        time.sleep(0.003 * n)
        return train(self, state, progress, n)

    monkeypatch.setattr(level_loop.LoneCalls, "train", slow_train)
    busy.start()
    try:
        loaded = ladder_counts()
    finally:
        stop.set()
        busy.join()
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    eight = json.loads(out.strip().splitlines()[-1])
    assert (alone["devices"], eight["devices"]) == (jax.device_count(), 8)
    for counts in (loaded, eight):
        assert {k: v for k, v in counts.items() if k != "devices"} == {k: v for k, v in alone.items() if k != "devices"}
    assert alone["steps"] == alone["step_budget"] == alone["sal_flops"] // alone["plain_step_flops"]


def _with_seed(config, seed):
    copy = config.copy_and_resolve_references()
    copy.seed = seed
    return copy


def test_members_get_the_step_count_of_their_lone_ladders(data):
    """train_members: every member's compute-matched baseline has its lone ladder's FLOPs and steps."""
    config = ladder_config()
    config.model.levels = (1, 2)
    levels = make_ladder(config.model, data.num_classes)
    results = train_members(levels, data, config, (0, 1))
    for seed, result in zip((0, 1), results):
        lone = train_ladder(levels, data, _with_seed(config, seed))
        got, want = result.plain_compute_matched, lone.plain_compute_matched
        assert [r.flops for r in result.sal] == [r.flops for r in lone.sal]
        assert (got.steps, got.step_budget, got.flop_budget, got.flops) == (want.steps, want.step_budget,
                                                                             want.flop_budget, want.flops)
        assert got.steps == want.flop_budget // want.step_flops


@pytest.mark.parametrize("family", ["glai", "set_mlp"])
def test_glai_and_sparse_levels_count_their_steps(data, family):
    """A GLAI baseline's structure phase and value phase spend one budget (the value steps count at their own
    FLOPs); a sparse level's masked matmuls count as dense ones."""
    config = ladder_config()
    config.model.family, config.model.levels, config.train.epochs = family, (1, 2), 4
    config.model.epsilon = 3.0
    result = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    plain = result.plain_compute_matched
    assert plain.flop_budget == result.sal_flops and plain.steps == plain.step_budget
    assert plain.flops <= plain.flop_budget < plain.flops + plain.step_flops
    if family == "set_mlp":  # masked matmuls count as dense ones: at least the dense MLP's step
        dense = MLP(2, config.model.width, data.num_classes)
        assert plain.step_flops >= compute_budget.level_flops(LevelPlan(dense, 2), data, config).step


class CallSizes(Hook):
    def __init__(self):
        self.sizes = []

    def after_call(self, loop, call):
        self.sizes.append(call.steps)


def test_a_flop_budget_ends_calls_exactly_at_its_step(data):
    config = ladder_config()
    config.train.steps_per_call = 3
    sizes = CallSizes()
    level = make_ladder(config.model, data.num_classes)[0]
    step = compute_budget.level_flops(LevelPlan(level, 1), data, config).step
    run = level_loop.train_level(level, data, config, level=1, flop_budget=6 * step + step // 2, hooks=[sizes])
    assert sizes.sizes == [3, 1, 2] and run.steps == run.step_budget == 6  # 4 steps an epoch
    assert len(run.history) == 2 and "test_accuracy" in run.history[-1]
