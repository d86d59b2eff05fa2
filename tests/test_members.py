"""Members (sal_jax.members): M trainings of one level stacked in one compiled program equal M lone runs of
the same seeds and settings to float32 rounding, repeat bit for bit, split over devices without
communication, and a member that goes non-finite stops alone.

The lone reference is the lone path's own programs (sal_jax.chunks.compile_level on SplitBatches, a state
initialised as the level loop's setup does), run epoch by epoch on the epoch orders of the seeds: what
train_level runs, without its bookkeeping. Runs on 8 devices happen in tests/members_child.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from promises import assert_reproduced
from sal_jax import chunks, members, parallel
from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset, epoch_order
from sal_jax.data.digits import load_digits_dataset
from sal_jax.data.images import augment_images
from sal_jax.guidance import make_guidance
from sal_jax.models import CNN, MLP, RNN, TextTransformer
from sal_jax.optimizers import make_optimizer
from sal_jax.step import eval_step_fn, init_state, level_variables, train_step_fn
from sal_jax.teacher_cache import teacher_cache

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
EPOCHS = 2
# A member's parameters against its lone run's after 2 epochs (19-38 steps), largest differences measured on
# this project's CPU (jax 0.10.2): MLP 9e-8 (level 2 guided included), CNN+BatchNorm with augmentation 6e-7,
# GRU 1.2e-7, Transformer 1.8e-7, NNX ResNet (BatchNorm, Dropout) 8.6e-7; per-member settings 1.2e-7; 8
# devices against 1, 1.2e-7. Batched matmuls sum in another order than single ones: rounding, grown over the
# steps (the issue measured up to 4e-5 after 50 steps of a 16x64 tanh MLP). The bound leaves 5x room.
PARAMS_ATOL = 4e-6
METRICS_ATOL = 1e-4  # per-epoch means of the losses: rounding of the parameters, carried through a forward pass


def tokens(n: int, seed: int = 0) -> ArrayDataset:
    """Token sequences (length 6, padded with 0 after 3..6 tokens) whose class is their first token mod 3."""
    rng = np.random.default_rng(seed)
    x = np.where(np.arange(6) < rng.integers(3, 7, (n + 120, 1)), rng.integers(1, 30, (n + 120, 6)), 0)
    x = x.astype(np.int32)
    y = (x[:, 0] % 3).astype(np.int32)
    return ArrayDataset("tokens", x[:n], y[:n], x[n:], y[n:], 3, vocab_size=30)


def case(family: str):
    """(levels, data, config) of a small two-level ladder of `family`; about 19 steps an epoch."""
    config = default_config()
    config.train.learning_rate = 3e-3
    if family in ("mlp", "nnx"):
        data = load_digits_dataset()
        if family == "mlp":
            return [MLP(d, 32, 10, "tanh") for d in (1, 2)], data, config
        from nnx_models import resnet_ladder  # BatchNorm statistics and a Dropout RNG stream in the state
        return resnet_ladder((1, 2), 64, 32, 10), data, config
    if family == "cnn":  # BatchNorm, and augmentation keyed per member
        config.data.augment = True
        return [CNN(c, 10) for c in ((4,), (4, 8))], load_digits_dataset(flatten=False), config
    config.train.batch_size = 32
    if family == "gru":
        return [RNN(d, 16, 30, 3, 16) for d in (1, 2)], tokens(608), config
    return [TextTransformer(d, 30, 3, dim=16, heads=2) for d in (1, 2)], tokens(608), config


def run_key(seed: int, level: int) -> jax.Array:
    """A level's augmentation key in round 1, as the level loop derives it (fold_in(fold_in(key(seed), level), round))."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), level), 1)


def setup(student, data, config, level: int, teacher_module=None):
    """(guidance, sample batch) as the level loop's setup makes them, on the CPU."""
    batch = config.train.batch_size
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        sample_x = jnp.asarray(data.x_train[:batch])
        steps = EPOCHS * (len(data.x_train) // batch)
        guidance = (make_guidance(student, teacher_module, sample_x, config.guidance, steps)
                    if teacher_module is not None else None)
    return guidance, data.x_train[:batch]


def lone_start(levels, data, config, seed: int, level: int = 1, teacher=None, tx=None, programs=None):
    """The lone path of one seed, ready to train: (programs, initial state, teacher, train split, test split).
    `programs`: another seed's, reused as the lone path's ProgramCache does (not with augmentation, whose key
    is the seed's)."""
    student, batch = levels[level - 1], config.train.batch_size
    guidance, sample_x = setup(student, data, config, level, levels[level - 2] if teacher is not None else None)
    tx = make_optimizer(config.train) if tx is None else tx
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        state = init_state(student, tx, jax.random.fold_in(jax.random.key(seed), level), jnp.asarray(sample_x),
                           guidance)
    shardings = parallel.step_shardings(parallel.make_mesh(config.parallel), state, teacher)
    state, teacher = jax.device_put(state, shardings.state), jax.device_put(teacher, shardings.teacher)
    augment = augment_images if config.data.augment else None
    cache = teacher_cache(guidance, teacher, data.x_train, batch) if guidance is not None and not augment else {}
    train = parallel.SplitBatches({"x": data.x_train, "y": data.y_train, **cache}, batch, shardings.batch, 1024.0,
                                  num_batches=len(data.x_train) // batch)
    test = parallel.SplitBatches({"x": data.x_test, "y": data.y_test}, batch, shardings.batch, 1024.0)
    if programs is None or augment:
        programs, state = chunks.compile_level(train_step_fn(student, tx, guidance, augment, run_key(seed, level)),
                                               eval_step_fn(student, guidance), train, test, shardings, state, teacher)
    return programs, state, teacher, train, test


def lone_runs(levels, data, config, seeds, level: int = 1, teachers=None, tx=None):
    """The lone path, seed by seed: per seed ([variables after each epoch], [each epoch's train and test means])."""
    runs, programs = [], None
    for i, seed in enumerate(seeds):
        programs, state, teacher, train, test = lone_start(levels, data, config, seed, level,
                                                           None if teachers is None else teachers[i], tx, programs)
        variables, rows = [], []
        for epoch in range(EPOCHS):
            plan, offset = train.plan(epoch_order(len(data.x_train), seed, level, 1, epoch), 0, train.num_batches)
            state, sums, health = programs.train(state, teacher, train.source, plan, offset, train.num_batches,
                                                 programs.train_zeros)
            assert int(health["step"]) == -1
            means = chunks.evaluate(programs.evaluate, programs.eval_zeros, state, teacher, test)
            rows.append({**{f"train_{k}": float(v) / train.num_batches for k, v in jax.device_get(sums).items()},
                         **{f"test_{k}": v for k, v in means.items()}})
            variables.append(jax.device_get(level_variables(state)))
        runs.append((variables, rows))
    return runs


def member_run(levels, data, config, seeds, level: int = 1, teachers=None, settings=None, hyperparams=None,
               mesh=None, calls: int = 1, inputs=None, cache: bool = True):
    """The members of `seeds` (one each, in order) in one program: (final stacked state, each epoch's
    per-member train and test means, last health). teachers: each member's teacher variables; settings:
    per-member guidance settings; hyperparams: per-member optimizer settings; calls: calls per epoch;
    inputs: each member's own training inputs (instead of the shared ones); cache: the teachers' outputs
    computed once per member (sal_jax.teacher_cache) unless augmenting, else in every step."""
    student, batch, m = levels[level - 1], config.train.batch_size, len(seeds)
    steps = len(data.x_train) // batch
    guidance, sample_x = setup(student, data, config, level, levels[level - 2] if teachers is not None else None)
    tx = members.member_optimizer(config.train)
    states = members.with_hyperparams(members.initial_states(student, tx, sample_x, seeds, level, guidance),
                                      **(hyperparams or {}))
    augment = augment_images if config.data.augment else None
    own = ({} if guidance is None or augment or not cache else
           members.stack([teacher_cache(guidance, t, data.x_train, batch) for t in teachers]))
    own = own if inputs is None else {**own, "x": np.stack(inputs)}
    inputs = members.MemberInputs(teacher=None if teachers is None else members.stack(teachers),
                                  key=members.stack([run_key(s, level) for s in seeds]) if augment else None,
                                  settings={k: jnp.asarray(v, jnp.float32) for k, v in (settings or {}).items()},
                                  own=own)
    placed = members.member_shardings(mesh).members if mesh is not None else None
    states, inputs = jax.device_put((states, inputs), placed)
    step = members.member_step_fn(student, tx, guidance, augment, config.guidance.schedule, EPOCHS * steps)
    train = members.make_member_train(step, mesh, device_loop=not isinstance(student, CNN))
    evaluate = members.make_member_eval(student, guidance, config.guidance.schedule, EPOCHS * steps, mesh)
    source = members.device_source({"x": data.x_train, "y": data.y_train}, mesh)
    test_source = members.device_source({"x": data.x_test, "y": data.y_test}, mesh)
    test_plan = members.member(members.member_plans(len(data.x_test), batch, [None]), 0)
    eval_zeros = members.eval_zeros(student, guidance, states, inputs, test_source, mesh)
    sums, health = members.member_zeros(step, states, inputs, source, mesh)
    rows = []
    for epoch in range(EPOCHS):
        plans = members.member_plans(len(data.x_train), batch, members.epoch_orders(
            len(data.x_train), seeds, level, 1, epoch), steps)
        sums = jax.tree.map(jnp.zeros_like, sums)
        bounds = np.linspace(0, steps, calls + 1).astype(int)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            states, sums, health = train(states, inputs, source, plans, start, stop - start, sums, health)
        test = jax.device_get(evaluate(states, inputs, test_source, test_plan, 0, len(test_plan["idx"]), eval_zeros))
        count = test.pop("count")
        rows.append([{**{f"train_{k}": float(v[i]) / steps for k, v in jax.device_get(sums).items()},
                      **{f"test_{k}": float(v[i] / count[i]) for k, v in test.items()}} for i in range(m)])
    return states, rows, jax.device_get(health)


# Attention's key bias shifts all of a query's scores alike, which softmax ignores: its gradient is 0 in exact
# arithmetic and rounding noise in float32, which Adam turns into steps of the learning rate's size (4e-3
# apart after 38 steps, every other leaf within 2e-7). Its values are noise in a lone run too, and the
# level's outputs do not depend on them (the test metrics agree): left out of the parameter comparisons.
NOISE_ONLY = ("attention", "key", "bias")


def max_difference(a, b) -> float:
    """The largest absolute difference between two pytrees of the same structure (NOISE_ONLY leaves aside)."""
    paths = [tuple(getattr(k, "key", k) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(a)]
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for path, x, y in zip(paths, jax.tree.leaves(a), jax.tree.leaves(b)) if path[-3:] != NOISE_ONLY)


def assert_rows_close(member_rows, lone_rows, test_examples: int) -> None:
    """Loss terms and gradient norms within METRICS_ATOL; accuracies within one example's rounding flip."""
    assert member_rows.keys() == lone_rows.keys()
    for key, want in lone_rows.items():
        atol = 1.0 / test_examples if key.endswith("accuracy") else METRICS_ATOL * max(1.0, abs(want))
        assert abs(member_rows[key] - want) <= atol, (key, member_rows[key], want)


FAMILIES = ["mlp", "cnn", "gru", "transformer", "nnx"]
GUIDED = ("mlp",)  # level 2 too, the teacher run in the members' step (the lone runs read their cache: same math)


def assert_members_equal_lone_runs(got, got_rows, lone, test_examples: int) -> float:
    """Every member's final variables within PARAMS_ATOL of its lone run's and its epochs' means within
    rounding; returns the largest parameter difference."""
    differences = []
    for i, (variables, lone_rows) in enumerate(lone):
        differences.append(max_difference(level_variables(members.member(got, i)), variables[-1]))
        for epoch in range(EPOCHS):
            assert_rows_close(got_rows[epoch][i], lone_rows[epoch], test_examples)
    assert max(differences) <= PARAMS_ATOL, differences
    return max(differences)


@pytest.mark.parametrize("family", FAMILIES)
def test_members_equal_lone_runs_of_their_seeds_to_rounding(family):
    """Level 1 of 3 seeds as members against 3 lone runs: initial weights the same bits, parameters after 2
    epochs within PARAMS_ATOL (the difference measured is printed), every epoch's training and test means
    within rounding; for GUIDED families, level 2 guided by each seed's own lone level 1 too."""
    levels, data, config = case(family)
    sample_x = data.x_train[:config.train.batch_size]
    initial = members.initial_states(levels[0], members.member_optimizer(config.train), sample_x, SEEDS, 1)
    for seed, state in zip(SEEDS, members.unstack(initial, len(SEEDS))):
        with jax.default_device(jax.local_devices(backend="cpu")[0]):
            alone = init_state(levels[0], make_optimizer(config.train), jax.random.fold_in(jax.random.key(seed), 1),
                               jnp.asarray(sample_x))
        chex.assert_trees_all_equal((state.params, state.batch_stats), (alone.params, alone.batch_stats))
    lone = lone_runs(levels, data, config, SEEDS)
    states, rows, health = member_run(levels, data, config, SEEDS)
    assert list(health["step"]) == [-1] * len(SEEDS)
    differences = [assert_members_equal_lone_runs(states, rows, lone, len(data.x_test))]
    if family in GUIDED:
        teachers = [variables[-1] for variables, _ in lone]
        guided, guided_rows, _ = member_run(levels, data, config, SEEDS, 2, teachers, cache=False)
        differences.append(assert_members_equal_lone_runs(
            guided, guided_rows, lone_runs(levels, data, config, SEEDS, 2, teachers), len(data.x_test)))
    print(f"{family}: largest parameter difference, members vs lone runs: {max(differences):.3g}")


def test_members_run_twice_give_the_same_bits():
    """The same members, guided by their own level 1 with per-member settings, twice: the same bits."""
    levels, data, config = case("mlp")
    top, _, _ = member_run(levels, data, config, SEEDS)
    teachers = members.unstack(jax.device_get(level_variables(top)), len(SEEDS))
    settings = {"hidden_weight": [1.0, 0.5, 2.0], "temperature": [4.0, 2.0, 1.0]}
    hyperparams = {"learning_rate": [3e-3, 1e-3, 1e-2]}
    first = member_run(levels, data, config, SEEDS, 2, teachers, settings, hyperparams)
    again = member_run(levels, data, config, SEEDS, 2, teachers, settings, hyperparams)
    assert_reproduced(jax.device_get(first[0]), jax.device_get(again[0]), atol=1e-6)
    assert_reproduced(first[1], again[1], atol=1e-6)


def test_per_member_settings_equal_lone_runs_configured_with_them():
    """One seed, two members: λ_h, λ_o, T (on a linear-decay schedule), the learning rate and adamw's
    weight decay set per member, each against a lone run whose config (or, for the weight decay, which
    make_optimizer takes from optax's default, its optimizer) has that value."""
    levels, data, config = case("mlp")
    config.train.optimizer, config.guidance.schedule = "adamw", "linear_decay"
    teacher = lone_runs(levels, data, config, [0])[0][0][-1]
    points = [{"hidden_weight": 1.0, "output_weight": 1.0, "temperature": 4.0, "learning_rate": 3e-3,
               "weight_decay": 1e-4},  # the defaults
              {"hidden_weight": 0.25, "output_weight": 2.0, "temperature": 2.0, "learning_rate": 1e-2,
               "weight_decay": 0.05}]
    column = lambda keys: {k: [p[k] for p in points] for k in keys}
    states, rows, _ = member_run(levels, data, config, [0] * len(points), 2, [teacher] * len(points),
                                 column(members.GUIDANCE_SETTINGS), column(("learning_rate", "weight_decay")))
    for i, point in enumerate(points):
        config.guidance.hidden_weight = point["hidden_weight"]
        config.guidance.output_weight = point["output_weight"]
        config.guidance.temperature = point["temperature"]
        config.train.learning_rate = point["learning_rate"]
        tx = optax.adamw(point["learning_rate"], weight_decay=point["weight_decay"])
        lone = lone_runs(levels, data, config, [0], 2, [teacher], tx)
        difference = assert_members_equal_lone_runs(jax.tree.map(lambda a: a[i:i + 1], states),
                                                    [[r[i]] for r in rows], lone, len(data.x_test))
        print(f"setting point {i}: largest parameter difference {difference:.3g}")
    assert rows[-1][0]["train_lambda_hidden"] != rows[-1][1]["train_lambda_hidden"]  # the settings were data


def test_a_member_that_goes_non_finite_freezes_alone_at_its_step():
    """Member 1 (seed 1) reads its own copy of the training inputs, one of which is NaN: the first example
    of its batch at step POISONED. It is reported at that step, with non-finite metrics, and keeps the
    step and parameters from before it through the later calls (4 calls an epoch, 2 epochs): the lone
    run's after POISONED steps. Members 0 and 2 equal their lone runs."""
    poisoned = 7
    levels, data, config = case("mlp")
    order = epoch_order(len(data.x_train), 1, 1, 1, 0)
    x = data.x_train.copy()
    x[order[poisoned * config.train.batch_size]] = np.nan
    states, rows, health = member_run(levels, data, config, SEEDS, calls=4, inputs=[data.x_train, x, data.x_train])
    assert list(health["step"]) == [-1, poisoned, -1]
    assert not np.all(np.isfinite([v[1] for v in health["metrics"].values()]))
    frozen = members.member(states, 1)
    assert int(frozen.step) == poisoned
    programs, state, _, train, _ = lone_start(levels, data, config, 1)
    plan, offset = train.plan(order, 0, train.num_batches)
    before, _, _ = programs.train(state, None, train.source, plan, offset, poisoned, programs.train_zeros)
    assert max_difference(level_variables(frozen), jax.device_get(level_variables(before))) <= PARAMS_ATOL
    healthy = jax.tree.map(lambda a: a[np.array([0, 2])], states)
    assert_members_equal_lone_runs(healthy, [[r[0], r[2]] for r in rows], lone_runs(levels, data, config, (0, 2)),
                                   len(data.x_test))


def test_eight_devices_split_members_without_communication():
    """8 members on 8 simulated devices (tests/members_child.py): over the ensemble axis alone, and 4 x 2
    with each member's batch split over the data axis, against 1 device: equal to rounding. The compiled
    programs hold no collective when only the ensemble axis is > 1 (and the 4 x 2 one does: the check sees
    collectives where there are some, each within one member's devices)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "members_child.py")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["collectives"]["ensemble 8"] == {"train": [], "evaluate": [], "guided train": []}
    assert result["collectives"]["ensemble 4 x data 2"]["train"]  # the data axis all-reduces the gradients
    # ... within each member's devices: no collective's device group spans two members
    assert result["across_members"] == {name: {"train": [], "evaluate": [], "guided train": []}
                                        for name in ("ensemble 8", "ensemble 4 x data 2")}
    assert result["control"]  # a sum over the members is seen crossing them
    print(f"8 devices vs 1: largest parameter difference {result['difference']}")
    assert max(result["difference"].values()) <= PARAMS_ATOL


def test_split_members_keeps_what_differs_as_settings_and_refuses_the_rest():
    from sal_jax.config import default_config, with_values
    from sal_jax.errors import ConfigError

    base = default_config()
    configs = [with_values(base, {"seed": 3, "guidance.hidden_weight": 0.5}),
               with_values(base, {"seed": 4, "guidance.hidden_weight": 2.0, "train.learning_rate": 1e-3}),
               with_values(base, {"seed": 3, "guidance.hidden_weight": 0.5, "train.learning_rate": 3e-3})]
    config, seeds, settings = members.split_members(configs)
    assert config is configs[0] and seeds == (3, 4, 3)
    assert settings == {"guidance.hidden_weight": (0.5, 2.0, 0.5), "train.learning_rate": (1e-3, 1e-3, 3e-3)}
    assert members.split_members(configs[:1])[2] == {}
    with pytest.raises(ConfigError, match=r"training 1 differs from training 0 in guidance.distance, model.width"):
        members.split_members([base, with_values(base, {"guidance.distance": "cosine", "model.width": 8})])
    with pytest.raises(ConfigError, match="guidance.output_weight is 0 for some members and not for others"):
        members.split_members([base, with_values(base, {"guidance.output_weight": 0.0})])
    with pytest.raises(ConfigError, match="only adamw decays weights"):
        members.check_member_settings(base, {"train.weight_decay": (0.0, 0.1)}, 2)
    with pytest.raises(ConfigError, match="has 1 values for 2 members"):
        members.check_member_settings(base, {"train.learning_rate": (0.1,)}, 2)
