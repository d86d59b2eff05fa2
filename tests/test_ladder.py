"""The top-down trainer and its baselines, end to end on a tiny task."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from promises import assert_reproduced, assert_same_math
from sal_jax import parallel
from sal_jax.chunks import evaluate, make_eval_chunk, trace_step, zero_sums
from sal_jax.ladder import train_ladder, train_level
from sal_jax.models import make_ladder
from sal_jax.step import TrainState, eval_step_fn
from sal_jax.guidance import make_guidance


def as_numpy(tree):
    return jax.tree.map(np.array, tree)


def test_ladder_trains_every_level_and_both_baselines(data, config):
    levels = make_ladder(config.model, data.num_classes)
    result = train_ladder(levels, data, config)
    assert [(r.round, r.level) for r in result.sal] == [(1, 1), (1, 2), (1, 3)]
    assert len(result.levels) == 3
    steps_per_epoch = 150 // 32                                           # ragged remainder dropped
    for run in result.sal + [result.plain_epoch_matched]:
        assert run.steps == config.train.epochs * steps_per_epoch
        assert run.compiles == {"train": 1, "eval": 1}                    # ragged eval batch: no recompile
        assert run.compile_time > 0                                       # kept apart from train_time
    assert result.plain_time_matched.compiles == {"train": 1, "eval": 1}
    assert result.plain_time_matched.train_time >= result.sal_train_time  # it trains for SAL's whole budget
    assert "hidden" not in str(result.sal[0].history[0])                   # top level: task loss only
    assert {"train_hidden", "train_output", "test_hidden", "test_output"} <= set(result.sal[1].history[0])
    # every level learned the (easy) task
    assert all(run.final_test_accuracy > 0.8 for run in result.sal)


def top_guided_plain(data, config):
    """Level 1 trained plain, then level 2 twice from the same init and batches: guided by level 1, and
    plain. Also returns level 1's variables as they were before level 2 trained."""
    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    top = train_level(teacher, data, config, level=1)
    top_before = as_numpy(top.variables)
    guided = train_level(student, data, config, level=2, teacher=(teacher, top.variables))
    plain = train_level(student, data, config, level=2)
    return teacher, student, top, top_before, guided, plain


def test_zero_guidance_weights_give_bit_identical_plain_training(data, config):
    config.guidance.hidden_weight = 0.0
    config.guidance.output_weight = 0.0
    *_, guided, plain = top_guided_plain(data, config)
    # Two programs, equal in exact arithmetic: bitwise on a CPU; a GPU fuses them differently (7e-9 per
    # gradient measured on an H200), and 12 Adam steps at lr 3e-2 carry that to at most ~1e-6.
    assert_same_math(as_numpy(guided.variables), as_numpy(plain.variables), atol=1e-5)


def test_guidance_changes_training_and_leaves_the_teacher_alone(data, config):
    _, _, top, snapshot, guided, plain = top_guided_plain(data, config)
    chex.assert_trees_all_equal(as_numpy(top.variables), snapshot)  # untouched: bitwise on every backend
    assert not np.array_equal(guided.variables["params"]["head"]["kernel"], plain.variables["params"]["head"]["kernel"])


def test_hidden_guidance_pulls_student_features_toward_the_teacher(data, config):
    """The method's core effect: with λ_h > 0 the student's aligned features end closer to the
    teacher's than those of the same student trained plain (same init, same batches)."""
    config.guidance.hidden_weight = 10.0
    config.guidance.output_weight = 0.0
    config.train.epochs = 4
    teacher, student, top, _, guided, plain = top_guided_plain(data, config)
    # measure the plain student with the guided level's eval step (same width: no projections involved)
    guidance = make_guidance(student, teacher, jnp.asarray(data.x_train[:32]), config.guidance, 1)
    assert guidance.projections is None
    eval_step = eval_step_fn(student, guidance)

    def test_hidden(variables):
        state = TrainState(jnp.zeros((), jnp.int32), {"model": variables["params"], "projections": {}}, {}, None)
        shardings = parallel.step_shardings(parallel.make_mesh(config.parallel), state, top.variables)
        split = parallel.SplitBatches({"x": data.x_test, "y": data.y_test}, 32, shardings.batch, 1024)
        chunk = make_eval_chunk(eval_step, split, shardings)
        zeros = zero_sums(trace_step(eval_step, split, state, top.variables)[1], shardings)
        return evaluate(chunk, zeros, state, top.variables, split)["hidden"]

    assert test_hidden(guided.variables) < 0.5 * test_hidden(plain.variables)
    assert guided.history[-1]["test_hidden"] == test_hidden(guided.variables)


def test_rounds_continue_each_level_from_its_own_parameters(data, config):
    config.train.rounds = 2
    config.baselines.time_matched = False
    result = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    assert [(r.round, r.level) for r in result.sal] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    first, second = result.sal[0], result.sal[3]
    assert second.history[0]["train_ce"] < first.history[0]["train_ce"]  # level 1 resumed, not restarted
    assert result.plain_epoch_matched.steps == 2 * result.sal[2].steps    # epochs x rounds
    chex.assert_trees_all_equal(as_numpy(result.levels[0]), as_numpy(second.variables))
    # Round 1's variables are returned too, and stay readable: round 2's first step must not delete them.
    assert not np.array_equal(as_numpy(first.variables)["params"]["head"]["kernel"],
                              as_numpy(second.variables)["params"]["head"]["kernel"])


def test_a_users_own_modules_work_unchanged(data, config):
    class Tower(nn.Module):
        """A user's level: no `train` argument, features from a residual tower."""
        depth: int

        @nn.compact
        def __call__(self, x):
            h = nn.Dense(12)(x)
            features = []
            for _ in range(self.depth):
                h = h + nn.gelu(nn.Dense(12)(h))
                features.append(h)
            return nn.Dense(3)(h), tuple(features)

    config.baselines.time_matched = False
    result = train_ladder([Tower(1), Tower(3)], data, config)
    assert [r.compiles for r in result.sal] == [{"train": 1, "eval": 1}] * 2
    assert result.sal[1].history[-1]["train_hidden"] >= 0
    assert result.sal[1].final_test_accuracy > 0.8


def test_identical_runs_are_bit_identical(data, config):
    config.baselines.time_matched = False
    a = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    b = train_ladder(make_ladder(config.model, data.num_classes), data, config)
    assert_reproduced(as_numpy(a.levels), as_numpy(b.levels), atol=1e-5)


def test_augmentation_is_a_pure_function_of_the_run_position(config):
    from sal_jax.data.digits import load_digits_dataset
    from sal_jax.models import CNN

    images = load_digits_dataset(flatten=False)
    config.train.epochs, config.train.batch_size = 1, 64
    cnn = CNN((4,), 10, batch_norm=False)
    config.data.augment = True
    a = train_level(cnn, images, config, level=1)
    b = train_level(cnn, images, config, level=1)
    config.data.augment = False
    c = train_level(cnn, images, config, level=1)
    assert_reproduced(as_numpy(a.variables), as_numpy(b.variables), atol=1e-5)
    assert not np.array_equal(a.variables["params"]["head"]["kernel"], c.variables["params"]["head"]["kernel"])
