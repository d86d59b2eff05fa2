"""The jitted steps: the frozen teacher, BatchNorm modes, projections, compile counts."""
import re

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from promises import MATMUL_RTOL, assert_same_math
from sal_jax.config import default_config
from sal_jax.errors import ConfigError
from sal_jax.guidance import Guidance, make_guidance
from sal_jax.models import CNN, MLP
from sal_jax.projection import Projection
from sal_jax.step import init_state, level_variables, loss_terms, make_eval_step, make_train_step


def batch_of(x, y):
    return {"x": jnp.asarray(x), "y": jnp.asarray(y, jnp.int32), "weight": jnp.ones(len(y))}


@pytest.fixture
def mlp_batch():
    rng = np.random.default_rng(0)
    return batch_of(rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8))


def guidance_cfg(**overrides) -> ml_collections.ConfigDict:
    g = default_config().guidance
    g.update(overrides)
    return g


def teacher_and_student(batch, teacher=MLP(1, 6, 3, "tanh"), student=MLP(2, 6, 3, "tanh"), **overrides):
    guidance = make_guidance(student, teacher, batch["x"], guidance_cfg(**overrides), total_steps=10)
    teacher_vars = teacher.init(jax.random.key(1), batch["x"])
    return guidance, dict(teacher_vars)


class GuidedStepTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_teacher_gets_exactly_zero_gradient(self):
        rng = np.random.default_rng(0)
        batch = batch_of(rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8))
        guidance, teacher_vars = teacher_and_student(batch)
        student = MLP(2, 6, 3, "tanh")
        state = init_state(student, optax.sgd(0.1), jax.random.key(0), batch["x"], guidance)

        def loss_of_teacher(tv):
            return loss_terms(student, guidance, state.params, state.batch_stats, tv, batch, state.step, True)[0]

        grads = self.variant(jax.grad(loss_of_teacher))(teacher_vars)
        for leaf in jax.tree.leaves(grads):
            np.testing.assert_array_equal(leaf, 0.0)  # stop_gradient: exactly zero on every backend
        # ...while the guidance terms do depend on the teacher (so the zero is the stop-gradient's doing)
        _, (metrics, _) = loss_terms(student, guidance, state.params, {}, teacher_vars, batch, state.step, True)
        assert metrics["hidden"] > 0 and metrics["output"] > 0

    @chex.variants(with_jit=True, without_jit=True)
    def test_zero_weights_through_the_guided_path_give_the_plain_gradient(self):
        """λ_h = λ_o = 0 as *traced* weights (terms computed, then scaled by 0) changes nothing."""
        rng = np.random.default_rng(1)
        batch = batch_of(rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8))
        guidance, teacher_vars = teacher_and_student(batch)
        zeroed = Guidance(**{**guidance.__dict__, "hidden_weight": optax.constant_schedule(0.0),
                             "output_weight": optax.constant_schedule(0.0)})
        student = MLP(2, 6, 3, "tanh")
        state = init_state(student, optax.sgd(0.1), jax.random.key(0), batch["x"], zeroed)

        def grad_with(g, tv):
            fn = lambda p: loss_terms(student, g, p, {}, tv, batch, state.step, True)[0]
            return self.variant(jax.grad(fn))(state.params)["model"]

        # Two programs, equal in exact arithmetic: a GPU fuses them differently (7e-9 measured, H200).
        assert_same_math(grad_with(zeroed, teacher_vars), grad_with(None, None), atol=1e-6)


def test_teacher_variables_survive_steps_unchanged(mlp_batch):
    guidance, teacher_vars = teacher_and_student(mlp_batch)
    snapshot = jax.tree.map(np.array, teacher_vars)
    student, tx = MLP(2, 6, 3, "tanh"), optax.adam(1e-2)
    state = init_state(student, tx, jax.random.key(0), mlp_batch["x"], guidance)
    step = make_train_step(student, tx, guidance)
    for _ in range(3):
        state, _ = step(state, teacher_vars, mlp_batch)  # state is donated, the teacher must not be
    chex.assert_trees_all_equal(jax.tree.map(np.array, teacher_vars), snapshot)
    assert "projections" not in level_variables(state)["params"]


def test_projection_exists_only_when_shapes_differ(mlp_batch):
    same, _ = teacher_and_student(mlp_batch)
    assert same.projections is None
    assert init_state(MLP(2, 6, 3), optax.sgd(0.1), jax.random.key(0), mlp_batch["x"], same).params["projections"] == {}

    wider = MLP(2, 10, 3)
    differ, _ = teacher_and_student(mlp_batch, student=wider)
    params = init_state(wider, optax.sgd(0.1), jax.random.key(0), mlp_batch["x"], differ).params["projections"]
    assert set(params) == {"teacher_1"}                               # only the one aligned pair (1 -> 2)
    assert params["teacher_1"]["linear"]["kernel"].shape == (10, 6)  # student width -> teacher width

    no_hidden, _ = teacher_and_student(mlp_batch, student=wider, hidden_weight=0.0)
    assert no_hidden.projections is None                             # output-only: nothing to project


def test_cnn_projection_resizes_space_and_maps_channels():
    x = jnp.zeros((2, 8, 8, 1))
    teacher, student = CNN((4,), 3, False), CNN((4, 8), 3, False)  # teacher h1: 4x4x4; student h2: 2x2x8
    guidance = make_guidance(student, teacher, x, guidance_cfg(), total_steps=1)
    state = init_state(student, optax.sgd(0.1), jax.random.key(0), x, guidance)
    assert guidance.alignment == {1: 2}
    assert state.params["projections"]["teacher_1"]["linear"]["kernel"].shape == (8, 4)
    _, feats = student.apply({"params": state.params["model"]}, x)
    projected = guidance.projections.apply({"params": state.params["projections"]}, feats)
    assert projected[1].shape == (2, 4, 4, 4)


def image_batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return batch_of(rng.normal(1.0, 2.0, (n, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, n))


def test_batchnorm_stats_update_in_student_not_in_teacher():
    batch = image_batch()
    teacher, student = CNN((4,), 3, True), CNN((4, 8), 3, True)
    guidance = make_guidance(student, teacher, batch["x"], guidance_cfg(), total_steps=5)
    teacher_vars = dict(teacher.init(jax.random.key(1), batch["x"]))
    teacher_stats = jax.tree.map(np.array, teacher_vars["batch_stats"])
    tx = optax.adam(1e-2)
    state = init_state(student, tx, jax.random.key(0), batch["x"], guidance)
    initial_stats = jax.tree.map(np.array, state.batch_stats)
    step = make_train_step(student, tx, guidance)
    for _ in range(3):
        state, metrics = step(state, teacher_vars, batch)
    chex.assert_trees_all_equal(jax.tree.map(np.array, teacher_vars["batch_stats"]), teacher_stats)
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), jax.device_get(state.batch_stats), initial_stats)
    assert all(jax.tree.leaves(moved)), "every student BatchNorm statistic should have moved"
    assert np.isfinite(metrics["hidden"]) and metrics["hidden"] > 0


def test_eval_uses_running_averages_so_examples_do_not_interact():
    """In inference mode an example's prediction must not depend on the rest of its batch."""
    student = CNN((4, 8), 3, True)
    batch = image_batch()
    tx = optax.sgd(0.1)
    state = init_state(student, tx, jax.random.key(0), batch["x"])
    state, _ = make_train_step(student, tx)(state, None, batch)  # moves the running averages
    eval_step = make_eval_step(student)
    whole = eval_step(state, None, batch)
    one_by_one = [eval_step(state, None, jax.tree.map(lambda a: a[i:i + 1], batch)) for i in range(16)]
    # One batch of 16 and 16 batches of one: the same math in differently shaped convolutions.
    np.testing.assert_allclose(sum(float(m["ce"]) for m in one_by_one), float(whole["ce"]), rtol=MATMUL_RTOL)


def test_one_compilation_per_level_for_train_and_eval(mlp_batch):
    guidance, teacher_vars = teacher_and_student(mlp_batch)
    student, tx = MLP(2, 6, 3, "tanh"), optax.adam(1e-2)
    state = init_state(student, tx, jax.random.key(0), mlp_batch["x"], guidance)
    train_step, eval_step = make_train_step(student, tx, guidance), make_eval_step(student, guidance)
    for i in range(4):
        batch = jax.tree.map(lambda a: a + 0 * i, mlp_batch)
        state, _ = train_step(state, teacher_vars, batch)
        eval_step(state, teacher_vars, batch)
    assert train_step._cache_size() == 1 and eval_step._cache_size() == 1


@pytest.mark.parametrize("student_shape, target", [((4, 4, 8), (8, 8, 3)), ((8, 8, 2), (4, 4, 5))])
def test_projection_is_resize_then_channel_map_in_either_order(student_shape, target):
    """Upsampling maps channels first (cheaper); downsampling resizes first. Either way the result is
    the FitNets regressor W·resize(h) + b."""
    h = jax.random.normal(jax.random.key(0), (3, *student_shape))
    projection = Projection(target)
    params = projection.init(jax.random.key(1), h)["params"]
    kernel, bias = params["linear"]["kernel"], params["linear"]["bias"]
    bias = bias + 0.5  # a nonzero bias: resizing must carry it unchanged
    got = projection.apply({"params": {"linear": {"kernel": kernel, "bias": bias}}}, h)
    resized = jax.image.resize(h, (3, *target[:-1], student_shape[-1]), method="linear")
    # Resize and channel map commute in exact arithmetic; float32 matmuls at the backend's precision.
    np.testing.assert_allclose(got, resized @ kernel + bias, rtol=MATMUL_RTOL, atol=MATMUL_RTOL)


@pytest.mark.parametrize("missing", ["weight", "y"])
def test_a_batch_without_a_needed_key_is_named_at_trace_time(mlp_batch, missing):
    student = MLP(2, 6, 3, "tanh")
    tx = optax.sgd(0.1)
    state = init_state(student, tx, jax.random.key(0), mlp_batch["x"])
    bad = {k: v for k, v in mlp_batch.items() if k != missing}
    expected = (rf"^batch: missing '{missing}' \(has \[.*\]\); a batch needs 'x' \(the inputs\); 'y' \(the "
                r"integer labels\); 'weight' \(the per-example weight: 1 for real examples, 0 for padding\)$")
    calls = [lambda step=step: jax.eval_shape(step, state, None, bad)  # tracing alone raises it: no compiling
             for step in (make_train_step(student, tx), make_eval_step(student))]
    calls.append(lambda: loss_terms(student, None, state.params, state.batch_stats, None, bad, state.step, False))
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        # the message itself (JAX may attach a note about its filtered traceback frames, as a PEP 678 note)
        assert re.fullmatch(expected, str(info.value)), str(info.value)


def test_gradient_diagnostics_are_each_weighted_terms_gradient(mlp_batch):
    """Against gradients taken one term at a time (λ_h = 2, λ_o = 0.5): each norm, and the cosine between
    the CE's gradient and the sum of the guidance terms'; the three add up to the loss's gradient."""
    from sal_jax.step import gradient_diagnostics_fn

    student = MLP(2, 6, 3, "tanh")
    guidance, teacher_vars = teacher_and_student(mlp_batch, student=student, hidden_weight=2.0, output_weight=0.5)
    state = init_state(student, optax.sgd(0.1), jax.random.key(0), mlp_batch["x"], guidance)

    def grad_of(pick):
        def f(params):
            loss, (metrics, _) = loss_terms(student, guidance, params, state.batch_stats, teacher_vars, mlp_batch,
                                            state.step, True)
            return pick(loss, metrics)
        return jax.grad(f)(state.params)["model"]

    g_ce = grad_of(lambda loss, m: m["ce"])
    g_hidden = grad_of(lambda loss, m: 2.0 * m["hidden"])
    g_output = grad_of(lambda loss, m: 0.5 * m["output"])
    g_loss = grad_of(lambda loss, m: loss)
    flat = lambda g: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])
    guiding = flat(g_hidden) + flat(g_output)
    cosine = jnp.dot(flat(g_ce), guiding) / (jnp.linalg.norm(flat(g_ce)) * jnp.linalg.norm(guiding))
    out = jax.jit(gradient_diagnostics_fn(student, guidance))(state, teacher_vars, mlp_batch)
    np.testing.assert_allclose(out["grad_norm_ce"], jnp.linalg.norm(flat(g_ce)), rtol=MATMUL_RTOL)
    np.testing.assert_allclose(out["grad_norm_hidden"], jnp.linalg.norm(flat(g_hidden)), rtol=MATMUL_RTOL)
    np.testing.assert_allclose(out["grad_norm_output"], jnp.linalg.norm(flat(g_output)), rtol=MATMUL_RTOL)
    np.testing.assert_allclose(out["grad_cos_ce_guidance"], cosine, rtol=MATMUL_RTOL, atol=1e-6)
    np.testing.assert_allclose(flat(g_ce) + guiding, flat(g_loss), rtol=1e-4, atol=1e-6)
    assert -1.0 <= float(out["grad_cos_ce_guidance"]) <= 1.0
