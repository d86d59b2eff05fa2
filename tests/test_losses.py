"""Golden values computed by hand for every loss term, with and without jit."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sal_jax import losses
from sal_jax.errors import ConfigError

ONES2 = jnp.ones(2)


class LossesTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_cross_entropy_golden(self):
        logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(label) = 1/2 and 1/4
        labels = jnp.array([0, 1])
        ce = self.variant(losses.cross_entropy)
        np.testing.assert_allclose(ce(logits, labels, ONES2), (math.log(2) + math.log(4)) / 2, rtol=1e-6)
        # weight 0 (padding) removes an example from the mean
        np.testing.assert_allclose(ce(logits, labels, jnp.array([1.0, 0.0])), math.log(2), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_mse_golden(self):
        s = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        t = jnp.array([[1.0, 0.0], [0.0, 0.0]])
        d = self.variant(lambda s, t, w: losses.feature_distance(s, t, w, "mse"))
        np.testing.assert_allclose(d(s, t, ONES2), (2.0 + 12.5) / 2, rtol=1e-6)  # (0+4)/2, (9+16)/2
        np.testing.assert_allclose(d(s, t, jnp.array([0.0, 1.0])), 12.5, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_cosine_golden(self):
        s = jnp.array([[1.0, 0.0], [1.0, 0.0]])
        t = jnp.array([[1.0, 1.0], [-2.0, 0.0]])  # cos = 1/sqrt(2), and -1
        d = self.variant(lambda s, t, w: losses.feature_distance(s, t, w, "cosine"))
        np.testing.assert_allclose(d(s, t, jnp.array([1.0, 0.0])), 1 - 1 / math.sqrt(2), rtol=1e-6)
        np.testing.assert_allclose(d(s, t, jnp.array([0.0, 1.0])), 2.0, rtol=1e-6)

    def test_feature_distance_flattens_spatial_features(self):
        s = jnp.ones((2, 3, 3, 4))
        np.testing.assert_allclose(losses.feature_distance(s, jnp.zeros_like(s), ONES2, "mse"), 1.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_output_guidance_golden(self):
        # teacher/T = [ln 3, 0] -> p = [3/4, 1/4]; student [0, 0] -> q = [1/2, 1/2]; T = 2
        teacher = jnp.array([[2 * math.log(3.0), 0.0]])
        student = jnp.zeros((1, 2))
        kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
        og = self.variant(lambda s, t: losses.output_guidance(s, t, jnp.ones(1), 2.0))
        np.testing.assert_allclose(og(student, teacher), 4 * kl, rtol=1e-6)

    def test_output_guidance_gradient_is_t_times_prob_gap(self):
        # d/dz [T^2 KL(p || softmax(z/T))] = T (softmax(z/T) - p): the KD gradient, O(1) in T
        teacher = jnp.array([[2 * math.log(3.0), 0.0]])
        grad = jax.grad(lambda s: losses.output_guidance(s, teacher, jnp.ones(1), 2.0))(jnp.zeros((1, 2)))
        np.testing.assert_allclose(grad, [[2 * (0.5 - 0.75), 2 * (0.5 - 0.25)]], atol=1e-6)

    def test_teacher_receives_no_gradient(self):
        s, t = jnp.ones((2, 3)), jnp.zeros((2, 3))
        grad_feature = jax.grad(lambda t: losses.feature_distance(s, t, ONES2))(t)
        grad_logits = jax.grad(lambda t: losses.output_guidance(s, t, ONES2, 2.0))(t + 1.0)
        np.testing.assert_array_equal(grad_feature, 0.0)
        np.testing.assert_array_equal(grad_logits, 0.0)

    def test_hidden_guidance_sums_aligned_pairs(self):
        teacher = {1: jnp.zeros((2, 2)), 2: jnp.zeros((2, 2))}
        aligned = {1: jnp.ones((2, 2)), 2: 2 * jnp.ones((2, 2))}  # MSE 1 and 4
        np.testing.assert_allclose(losses.hidden_guidance(aligned, teacher, ONES2), 5.0)


@pytest.mark.parametrize("n_teacher, n_student, expected", [
    (1, 1, {1: 1}),
    (1, 2, {1: 2}),                       # the deepest teacher feature guides the deepest student one
    (2, 5, {1: 3, 2: 5}),                 # 2.5 rounds half up to 3 (Python's round() would give 2)
    (3, 4, {1: 1, 2: 3, 3: 4}),           # 1.33 -> 1, 2.67 -> 3
    (4, 8, {1: 2, 2: 4, 3: 6, 4: 8}),
    (8, 16, {j: 2 * j for j in range(1, 9)}),
])
def test_alignment_by_relative_depth(n_teacher, n_student, expected):
    assert losses.align_layers(n_teacher, n_student) == expected


def test_explicit_layer_map_replaces_rule_and_is_checked():
    assert losses.align_layers(2, 4, losses.parse_layer_map("1:1, 2:3")) == {1: 1, 2: 3}
    assert losses.parse_layer_map("  ") is None
    with pytest.raises(ConfigError, match=r"config.guidance.layer_map: teacher layer 3 does not exist"):
        losses.align_layers(2, 4, {3: 4})
    with pytest.raises(ConfigError, match=r"config.guidance.layer_map: student layer 5 does not exist"):
        losses.align_layers(2, 4, {1: 5})
    with pytest.raises(ConfigError, match=r"config.guidance.layer_map: expected"):
        losses.parse_layer_map("1-2")


def test_unknown_distance_is_an_error():
    with pytest.raises(ConfigError, match="config.guidance.distance"):
        losses.feature_distance(jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones(1), "l1")
