"""Scale-free guidance options: config.guidance.layer_reduction and config.guidance.feature_norm.

Golden values by hand; the defaults give the old loss bit for bit; the teacher's statistics exclude
padding rows and are the same with and without the teacher cache; they enter the step as data.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from promises import MATMUL_RTOL
from sal_jax import losses
from sal_jax.config import default_config
from sal_jax.errors import ConfigError
from sal_jax.guidance import make_guidance
from sal_jax.losses import FEATURE_RMS_EPS, FEATURE_RMS_FLOOR, feature_scales
from sal_jax.models import MLP, make_ladder
from sal_jax.step import FEATURE_SCALES, init_state, loss_terms, make_eval_step
from sal_jax.teacher_cache import feature_sum_squares, teacher_cache, with_feature_scales
from test_teacher_cache import assert_same_training, guided_pair

ONES2 = jnp.ones(2)


def test_sum_and_mean_over_matched_layers_golden():
    s1, t1 = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[1.0, 0.0], [0.0, 0.0]])  # d1 = (4/2 + 25/2) / 2
    s2, t2 = jnp.ones((2, 3)), jnp.zeros((2, 3))                                          # d2 = 1
    aligned, teacher = {1: s1, 3: s2}, {1: t1, 3: t2}
    d1, d2 = 7.25, 1.0
    np.testing.assert_allclose(losses.hidden_guidance(aligned, teacher, ONES2, "mse", "sum"), d1 + d2, rtol=1e-6)
    np.testing.assert_allclose(losses.hidden_guidance(aligned, teacher, ONES2, "mse", "mean"), (d1 + d2) / 2,
                               rtol=1e-6)
    with pytest.raises(ConfigError, match=r"config.guidance.layer_reduction: unknown 'max'"):
        losses.hidden_guidance(aligned, teacher, ONES2, "mse", "max")


def test_feature_scales_golden():
    # a feature of 2 examples x 2 units: unit 1 takes 3 and 4, unit 2 is dead (always 0)
    cache = {"teacher_feature_1": np.array([[3.0, 0.0], [4.0, 0.0]], np.float32)}
    sums, counts = feature_sum_squares(cache, {1: 1})
    np.testing.assert_array_equal(sums[1], [25.0, 0.0])
    assert counts[1] == 2
    layer = math.sqrt(25.0 / 4)  # 2.5: all four values
    np.testing.assert_allclose(feature_scales(sums, counts, "layer_rms")[1], layer, rtol=1e-7)
    unit = feature_scales(sums, counts, "unit_rms")[1]
    np.testing.assert_allclose(unit, [math.sqrt(12.5), FEATURE_RMS_FLOOR * layer], rtol=1e-7)  # dead unit: floored
    assert feature_scales(sums, counts, "none") == {}
    # a layer that is 0 everywhere is divided by eps, not by 0
    zero = feature_scales({1: np.zeros(2)}, {1: 2}, "unit_rms")[1]
    np.testing.assert_allclose(zero, FEATURE_RMS_FLOOR * FEATURE_RMS_EPS)
    np.testing.assert_allclose(feature_scales({1: np.zeros(2)}, {1: 2}, "layer_rms")[1], FEATURE_RMS_EPS)
    with pytest.raises(ConfigError, match=r"config.guidance.feature_norm: unknown 'batch'"):
        feature_scales(sums, counts, "batch")


def test_conv_features_are_scaled_per_channel():
    # 1 example, 2 x 1 positions, 2 channels: channel 1 takes 1 and 3, channel 2 takes 2 and 2
    feature = np.array([[[[1.0, 2.0]], [[3.0, 2.0]]]], np.float32)
    sums, counts = feature_sum_squares({"teacher_feature_1": feature}, {1: 1})
    assert counts[1] == 2
    np.testing.assert_allclose(feature_scales(sums, counts, "unit_rms")[1], [math.sqrt(5.0), 2.0], rtol=1e-7)
    np.testing.assert_allclose(feature_scales(sums, counts, "layer_rms")[1], math.sqrt(18.0 / 4), rtol=1e-7)
    # the scale divides the last axis
    scaled = losses.normalize_features({1: jnp.asarray(feature)}, {1: jnp.array([2.0, 4.0])})[1]
    np.testing.assert_allclose(scaled, feature / np.array([2.0, 4.0]))


def guided(batch_x, **overrides):
    teacher, student = MLP(2, 6, 3, "relu"), MLP(3, 6, 3, "relu")
    config = default_config().guidance
    config.update(overrides)
    guidance = make_guidance(student, teacher, batch_x, config, total_steps=10)
    teacher_vars = dict(teacher.init(jax.random.key(1), batch_x))
    state = init_state(student, optax.sgd(0.1), jax.random.key(0), batch_x, guidance)
    return student, guidance, teacher_vars, state


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return {"x": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32), "y": jnp.asarray(rng.integers(0, 3, 8)),
            "weight": jnp.ones(8)}


def test_defaults_give_the_old_loss_bit_for_bit(batch):
    """layer_reduction="sum", feature_norm="none" is L = CE + λ_h Σ_j D + λ_o T² KL, as before the options."""
    student, guidance, teacher_vars, state = guided(batch["x"])
    assert (guidance.layer_reduction, guidance.feature_norm) == ("sum", "none")
    assert len(guidance.alignment) == 2
    loss, (metrics, _) = loss_terms(student, guidance, state.params, {}, teacher_vars, batch, state.step, True)
    (logits, feats) = student.apply({"params": state.params["model"]}, batch["x"])
    (t_logits, t_feats) = guidance.teacher.apply(teacher_vars, batch["x"])
    w = batch["weight"]
    hidden = sum(losses.feature_distance(feats[a - 1], t_feats[j - 1], w) for j, a in guidance.alignment.items())
    old = (losses.cross_entropy(logits, batch["y"], w) + guidance.hidden_weight(state.step) * hidden
           + guidance.output_weight(state.step) * losses.output_guidance(logits, t_logits, w, 4.0))
    np.testing.assert_array_equal(metrics["hidden"], hidden)
    np.testing.assert_array_equal(loss, old)


@pytest.mark.parametrize("norm", ["unit_rms", "layer_rms"])
def test_normalised_loss_is_the_distance_of_the_divided_features(batch, norm):
    student, guidance, teacher_vars, state = guided(batch["x"], feature_norm=norm, layer_reduction="mean")
    scales = {j: jnp.full((6,) if norm == "unit_rms" else (), 0.5 + j) for j in guidance.alignment}
    _, (metrics, _) = loss_terms(student, guidance, state.params, {}, {**teacher_vars, FEATURE_SCALES: scales},
                                 batch, state.step, True)
    (_, feats) = student.apply({"params": state.params["model"]}, batch["x"])
    (_, t_feats) = guidance.teacher.apply(teacher_vars, batch["x"])
    by_hand = np.mean([np.mean((np.asarray(feats[a - 1]) - np.asarray(t_feats[j - 1])) ** 2) / (0.5 + j) ** 2
                       for j, a in guidance.alignment.items()])
    np.testing.assert_allclose(metrics["hidden"], by_hand, rtol=1e-5)


def test_missing_scales_are_a_config_error(batch):
    student, guidance, teacher_vars, state = guided(batch["x"], feature_norm="unit_rms")
    with pytest.raises(ConfigError, match=r"config.guidance.feature_norm: the teacher variables have no "
                                          r"'feature_scales'; add them with"):
        loss_terms(student, guidance, state.params, {}, teacher_vars, batch, state.step, True)


def test_scales_are_an_argument_of_the_step_not_constants(batch):
    """Other scales, same compiled program, other loss: they are data, like the teacher's params."""
    student, guidance, teacher_vars, state = guided(batch["x"], feature_norm="layer_rms")
    eval_step = make_eval_step(student, guidance)
    hidden = [eval_step(state, {**teacher_vars, FEATURE_SCALES: {j: jnp.float32(s) for j in guidance.alignment}},
                        batch)["hidden"] for s in (1.0, 2.0)]
    assert eval_step._cache_size() == 1
    np.testing.assert_allclose(hidden[1], hidden[0] / 4, rtol=1e-6)


@pytest.mark.parametrize("norm", ["unit_rms", "layer_rms"])
def test_statistics_exclude_padding_rows_and_need_no_cache(data, config, norm):
    """150 examples in batches of 32: the last batch has 10 padding rows (copies of a real example)."""
    config.guidance.feature_norm = norm
    teacher, student = make_ladder(config.model, data.num_classes)[1:]
    variables = dict(teacher.init(jax.random.key(0), data.x_train[:1]))
    guidance = make_guidance(student, teacher, data.x_train[:32], config.guidance, 10)
    uncached = with_feature_scales(guidance, variables, data.x_train, 32)[FEATURE_SCALES]
    cache = teacher_cache(guidance, variables, data.x_train, 32)
    cached = with_feature_scales(guidance, variables, data.x_train, 32, cache=cache)[FEATURE_SCALES]

    _, features = teacher.apply(variables, data.x_train)
    padded_x = np.concatenate([data.x_train, np.repeat(data.x_train[128:129], 10, 0)])  # what the batches hold
    _, padded_features = teacher.apply(variables, padded_x)
    for j in guidance.alignment:
        f = np.asarray(features[j - 1], np.float64)
        by_hand = np.sqrt(np.mean(f ** 2, 0)) if norm == "unit_rms" else np.sqrt(np.mean(f ** 2))
        if norm == "unit_rms":
            by_hand = np.maximum(by_hand, FEATURE_RMS_FLOOR * np.sqrt(np.mean(f ** 2)))
        np.testing.assert_allclose(uncached[j], by_hand, rtol=MATMUL_RTOL)
        np.testing.assert_array_equal(cached[j], uncached[j])  # the same pass, the same sums
        g = np.asarray(padded_features[j - 1], np.float64)
        with_padding = np.sqrt(np.mean(g ** 2, 0)) if norm == "unit_rms" else np.sqrt(np.mean(g ** 2))
        assert not np.allclose(uncached[j], with_padding, rtol=1e-4)  # the test would see padding counted


def test_feature_norm_none_leaves_the_teacher_variables_alone(data, config):
    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    variables = dict(teacher.init(jax.random.key(0), data.x_train[:1]))
    guidance = make_guidance(student, teacher, data.x_train[:32], config.guidance, 10)
    assert with_feature_scales(guidance, variables, data.x_train, 32) is variables


@pytest.mark.parametrize("norm, reduction", [("unit_rms", "mean"), ("layer_rms", "sum")])
def test_cached_and_uncached_teacher_give_the_same_normalised_training(data, config, norm, reduction):
    config.guidance.feature_norm, config.guidance.layer_reduction = norm, reduction
    teacher, student = make_ladder(config.model, data.num_classes)[1:]  # 2 teacher layers: mean != sum
    cached, uncached = guided_pair(data, config, teacher, student)
    assert_same_training(cached, uncached)
    assert cached.compiles == {"train": 1, "eval": 1}
