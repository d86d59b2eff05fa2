"""The teacher-feature cache gives the same training as computing the teacher in every step."""
import chex
import jax
import numpy as np
import pytest

import optax

from promises import MATMUL_RTOL
from sal_jax.data.arrays import batches
from sal_jax.data.digits import load_digits_dataset
from sal_jax.step import init_state, make_eval_step
from sal_jax.level_loop import train_level, use_teacher_cache
from sal_jax.guidance import make_guidance
from sal_jax.models import CNN, make_ladder
from sal_jax.teacher_cache import teacher_cache


def guided_pair(data, config, teacher, student):
    top = train_level(teacher, data, config, level=1)
    def run(cache: bool):
        config.guidance.cache_teacher = cache
        return train_level(student, data, config, level=2, teacher=(teacher, top.variables))
    return run(True), run(False)


def assert_same_training(cached, uncached):
    """Same math, different programs (the teacher's forward pass in its own jit, or fused into the step):
    not bitwise even on a CPU. Losses agree to float32 matmul rounding at the backend's precision; the
    parameters, after every step's rounding has moved them, to 1e-4 relative."""
    for a, b in zip(cached.history, uncached.history):
        for key in ("train_loss", "train_ce", "train_hidden", "train_output"):
            np.testing.assert_allclose(a[key], b[key], rtol=MATMUL_RTOL, err_msg=key)
    chex.assert_trees_all_close(jax.device_get(cached.variables), jax.device_get(uncached.variables),
                                rtol=1e-4, atol=1e-5)


def test_cached_and_uncached_mlp_losses_agree(data, config):
    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    assert_same_training(*guided_pair(data, config, teacher, student))


@pytest.mark.parametrize("feature_norm", ["none", "unit_rms"])
def test_cached_and_uncached_cnn_with_batchnorm_and_projections_agree(config, feature_norm):
    """...with the teacher's per-channel RMS dividing both features too (read from the cache, or from a
    pass of the teacher without one)."""
    images = load_digits_dataset(flatten=False)
    config.train.epochs, config.train.batch_size = 2, 128
    config.guidance.feature_norm = feature_norm
    assert_same_training(*guided_pair(images, config, CNN((4,), 10), CNN((4, 8), 10)))


def test_the_cache_really_replaces_the_teacher(data, config):
    """With the cache in the batch, the teacher's variables are never read: zeroing them changes
    nothing, while it does change the uncached step."""
    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    top = train_level(teacher, data, config, level=1)
    guidance = make_guidance(student, teacher, data.x_train[:32], config.guidance, 10)
    cache = teacher_cache(guidance, top.variables, data.x_train, 32)
    assert cache["teacher_logits"].shape == (150, 3)
    assert set(cache) == {"teacher_logits", "teacher_feature_1"}
    logits, _ = teacher.apply(top.variables, data.x_train)
    np.testing.assert_allclose(cache["teacher_logits"], logits, rtol=MATMUL_RTOL, atol=1e-6)  # jitted vs eager

    zeroed = jax.tree.map(np.zeros_like, top.variables)
    batch = next(batches(data.x_train, data.y_train, 32, extras=cache))
    plain_batch = {k: batch[k] for k in ("x", "y", "weight")}
    state = init_state(student, optax.sgd(0.1), jax.random.key(0), batch["x"], guidance)
    eval_step = make_eval_step(student, guidance)
    with_cache = eval_step(state, zeroed, batch)
    np.testing.assert_allclose(with_cache["hidden"], eval_step(state, top.variables, plain_batch)["hidden"],
                               rtol=MATMUL_RTOL)
    assert not np.allclose(with_cache["hidden"], eval_step(state, zeroed, plain_batch)["hidden"])


@pytest.mark.parametrize("augment, weights, expected", [
    (False, (1.0, 1.0), True), (True, (1.0, 1.0), False), (False, (0.0, 0.0), False)])
def test_cache_only_when_inputs_are_fixed_and_the_teacher_guides(data, config, augment, weights, expected):
    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    config.data.augment = augment
    config.guidance.hidden_weight, config.guidance.output_weight = weights
    guidance = make_guidance(student, teacher, data.x_train[:32], config.guidance, 10)
    assert use_teacher_cache(config, guidance) is expected
