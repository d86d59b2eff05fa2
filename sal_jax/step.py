"""One jitted train step and one eval step per level, over (state, teacher_variables, batch).

The frozen teacher enters as a separate variables pytree argument: it is applied in inference mode, it is
outside the optimizer, it receives no gradient (`stop_gradient` on its outputs) and, being an argument
rather than a closure constant, it is neither baked into the compiled program nor copied per step.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from sal_jax.errors import ConfigError
from sal_jax.guidance import Guidance
from sal_jax.levels import Variables, apply_level, init_level
from sal_jax.losses import cross_entropy, hidden_guidance, normalize_features, output_guidance, weighted_mean
from sal_jax.parallel import StepShardings

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
    """Everything that changes while a level trains. A plain pytree: easy to shard and checkpoint."""

    step: jax.Array
    params: Any          # {"model": the level's params, "projections": the guidance regressors ({} if none)}
    batch_stats: Any     # what the step updates besides params: BatchNorm statistics (an NNX level's Dropout
                         # RNG stream too, sal_jax.nnx_levels); {} if none
    opt_state: Any
    # The level's other variable collections, which neither the optimizer nor the step changes (e.g. a
    # frozen GLAI level's "structure", sal_jax.models.glai): arguments of the step, saved with the state.
    constants: Any = flax.struct.field(default_factory=dict)


def init_state(student: nn.Module, tx: optax.GradientTransformation, key: jax.Array, sample_x: jax.Array,
               guidance: Guidance | None = None) -> TrainState:
    model_key, proj_key = jax.random.split(key)
    variables = init_level(student, model_key, sample_x)
    params = {"model": variables["params"], "projections": {}}
    constants = level_constants(variables)
    if guidance is not None and guidance.projections is not None:
        (_, features), _ = apply_level(student, variables, sample_x, train=False)
        params["projections"] = guidance.projections.init(proj_key, features)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params), constants=constants)


def level_constants(variables: Variables) -> Variables:
    """The collections of a level's variables that training leaves alone: all but params and batch_stats."""
    return {k: v for k, v in variables.items() if k not in ("params", "batch_stats")}


def level_variables(state: TrainState) -> Variables:
    """The level's own variables (projections dropped): what a finished level is, and what teaches next."""
    variables = {"params": state.params["model"], **state.constants}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def batch_collections(batch: Batch) -> Variables:
    """Batch entries named "<collection>/<name>" as variable collections of the level: per-example inputs
    computed once per training set, e.g. a frozen GLAI level's gates (sal_jax.glai.gate_cache)."""
    collections: Variables = {}
    for key, value in batch.items():
        if "/" in key:
            collection, name = key.split("/", 1)
            collections.setdefault(collection, {})[name] = value
    return collections


BATCH_KEYS = {"x": "the inputs", "y": "the integer labels",
              "weight": "the per-example weight: 1 for real examples, 0 for padding"}


def check_batch(batch: Batch) -> None:
    """A batch dict has every key the steps read. A plain Python check: it runs while the step is traced,
    so it costs nothing per step, and replaces a bare KeyError('weight') from inside the trace."""
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        needs = "; ".join(f"{key!r} ({what})" for key, what in BATCH_KEYS.items())
        raise ConfigError(f"batch: missing {', '.join(map(repr, missing))} (has {sorted(batch)}); a batch needs "
                          f"{needs}")


def loss_terms(student: nn.Module, guidance: Guidance | None, params: Any, batch_stats: Any,
               teacher_variables: Variables | None, batch: Batch, step: jax.Array, train: bool,
               constants: Variables | None = None) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """L = CE + λ_h Σ_j D(P_j(h_a(j)), h^T_j) + λ_o T² KL(teacher ‖ student), and its terms. With
    guidance.layer_reduction "mean" the hidden term is averaged over the pairs j; with guidance.feature_norm
    both features of pair j are divided by the teacher's scale j (teacher_variables[FEATURE_SCALES])."""
    check_batch(batch)
    variables = {"params": params["model"], **({"batch_stats": batch_stats} if batch_stats else {}),
                 **(constants or {}), **batch_collections(batch)}
    (logits, features), new_batch_stats = apply_level(student, variables, batch["x"], train)
    weight = batch["weight"]
    ce = cross_entropy(logits, batch["y"], weight)
    correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
    metrics = {"ce": ce, "accuracy": weighted_mean(correct, weight)}
    loss = ce
    if guidance is not None and guidance.active:
        teacher_logits, teacher_features = teacher_outputs(guidance, teacher_variables, batch)
        if guidance.use_hidden:
            aligned = ({j: features[a - 1] for j, a in guidance.alignment.items()}
                       if guidance.projections is None
                       else guidance.projections.apply({"params": params["projections"]}, features))
            if guidance.feature_norm != "none":  # both sides by the teacher's RMS: D on standardised features
                scales = teacher_feature_scales(teacher_variables)
                aligned = normalize_features(aligned, scales)
                teacher_features = normalize_features(teacher_features, scales)
            hidden = hidden_guidance(aligned, teacher_features, weight, guidance.distance, guidance.layer_reduction)
            loss = loss + guidance.hidden_weight(step) * hidden
            metrics["hidden"] = hidden
            if train:  # the weight in force, for the training logs (its schedule's value at this step)
                metrics["lambda_hidden"] = jnp.asarray(guidance.hidden_weight(step), jnp.float32)
        if guidance.use_output:
            output = output_guidance(logits, teacher_logits, weight, guidance.temperature)
            loss = loss + guidance.output_weight(step) * output
            metrics["output"] = output
            if train:
                metrics["lambda_output"] = jnp.asarray(guidance.output_weight(step), jnp.float32)
    metrics["loss"] = loss
    return loss, (metrics, new_batch_stats)


TEACHER_LOGITS = "teacher_logits"
# The key of the teacher variables that holds config.guidance.feature_norm's divisors, {j: scale}: beside
# the teacher's own collections, so that they are an argument of the step like the teacher's params (not
# constants compiled into it) and reach the cached and the uncached step alike.
FEATURE_SCALES = "feature_scales"


def teacher_feature_scales(teacher_variables: Variables | None) -> dict[int, jax.Array]:
    """The divisors that `sal_jax.teacher_cache.with_feature_scales` put into the teacher variables."""
    if teacher_variables is None or FEATURE_SCALES not in teacher_variables:
        raise ConfigError(f"config.guidance.feature_norm: the teacher variables have no {FEATURE_SCALES!r}; "
                          f"add them with sal_jax.teacher_cache.with_feature_scales (train_level does)")
    return teacher_variables[FEATURE_SCALES]


def teacher_feature_key(j: int) -> str:
    return f"teacher_feature_{j}"


def teacher_outputs(guidance: Guidance, teacher_variables: Variables | None, batch: Batch
                    ) -> tuple[jax.Array, dict[int, jax.Array]]:
    """The frozen teacher's (logits, {j: feature j}) for this batch: read from the batch when the
    teacher cache put them there (sal_jax.teacher_cache), else computed in inference mode."""
    if TEACHER_LOGITS in batch:
        return batch[TEACHER_LOGITS], {j: batch[teacher_feature_key(j)] for j in guidance.alignment}
    module_variables = {k: v for k, v in teacher_variables.items() if k != FEATURE_SCALES}  # not the module's
    (logits, features), _ = apply_level(guidance.teacher, module_variables, batch["x"], train=False)
    return logits, {j: features[j - 1] for j in guidance.alignment}


def layer_grad_norms(grads: Any) -> Metrics:
    """L2 norm of the gradient of each top-level layer of the model (e.g. dense_0 ... head)."""
    return {f"grad_norm/{name}": optax.tree.norm(g) for name, g in grads["model"].items()}


def gradient_diagnostics_fn(student: nn.Module, guidance: Guidance) -> Callable[..., Metrics]:
    """diagnose(state, teacher_variables, batch) -> which term drives training, on one batch: the gradient
    norm of each term of the loss as weighted at the state's step (grad_norm_ce, grad_norm_hidden = |∇ λ_h H|,
    grad_norm_output = |∇ λ_o O|) and the cosine between the CE's gradient and the guidance's (the sum of
    the weighted guidance terms), over the level's own parameters (not the projections), in training mode.
    Nothing is updated: three backward passes, for config.guidance.gradient_diagnostics once an epoch."""

    def weighted_terms(params: Any, state: TrainState, teacher_variables: Variables | None, batch: Batch):
        _, (metrics, _) = loss_terms(student, guidance, params, state.batch_stats, teacher_variables, batch,
                                     state.step, True, state.constants)
        terms = {"ce": metrics["ce"]}
        if "hidden" in metrics:
            terms["hidden"] = guidance.hidden_weight(state.step) * metrics["hidden"]
        if "output" in metrics:
            terms["output"] = guidance.output_weight(state.step) * metrics["output"]
        return terms

    def diagnose(state: TrainState, teacher_variables: Variables | None, batch: Batch) -> Metrics:
        grads = {term: g["model"] for term, g in
                 jax.jacrev(weighted_terms)(state.params, state, teacher_variables, batch).items()}
        out = {f"grad_norm_{term}": optax.tree.norm(g) for term, g in grads.items()}
        guiding = [g for term, g in grads.items() if term != "ce"]
        if guiding:
            total = jax.tree.map(lambda *leaves: sum(leaves), *guiding)
            dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grads["ce"]), jax.tree.leaves(total)))
            out["grad_cos_ce_guidance"] = dot / jnp.maximum(optax.tree.norm(grads["ce"]) * optax.tree.norm(total),
                                                            jnp.finfo(jnp.float32).tiny)
        return out
    return diagnose


Augment = Callable[[jax.Array, jax.Array], jax.Array]  # (inputs, key) -> augmented inputs


Step = Callable[[TrainState, Variables | None, Batch], tuple[TrainState, Metrics]]


def train_step_fn(student: nn.Module, tx: optax.GradientTransformation, guidance: Guidance | None = None,
                  augment: Augment | None = None, augment_key: jax.Array | None = None) -> Step:
    """train_step(state, teacher_variables, batch) -> (state, metrics), not yet jitted: `make_train_step`
    compiles it alone, sal_jax.chunks many of it per call.

    With `augment`, the inputs are augmented on device with the key fold_in(augment_key, state.step): a
    pure function of the run's position, so a resumed run sees the same augmented batches. Student and
    teacher see the same augmented inputs.
    """

    def train_step(state: TrainState, teacher_variables: Variables | None, batch: Batch):
        check_batch(batch)  # before augment reads batch["x"]
        if augment is not None:
            batch = {**batch, "x": augment(batch["x"], jax.random.fold_in(augment_key, state.step))}
        grad_fn = jax.grad(loss_terms, argnums=2, has_aux=True)
        grads, (metrics, batch_stats) = grad_fn(student, guidance, state.params, state.batch_stats,
                                                teacher_variables, batch, state.step, True, state.constants)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(layer_grad_norms(grads))
        return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                             opt_state=opt_state), metrics
    return train_step


def make_train_step(student: nn.Module, tx: optax.GradientTransformation, guidance: Guidance | None = None,
                    augment: Augment | None = None, augment_key: jax.Array | None = None,
                    shardings: StepShardings | None = None) -> Step:
    """jit(train_step(state, teacher_variables, batch) -> (state, metrics)), state donated: one step per
    call (the training loop runs many per call: sal_jax.chunks). See `train_step_fn`.

    With `shardings` (sal_jax.parallel) the step is compiled for that mesh: the batch split over its
    devices, state and teacher laid out by the FSDP rule, metrics replicated (readable on every process).
    """
    train_step = train_step_fn(student, tx, guidance, augment, augment_key)
    if shardings is None:
        return jax.jit(train_step, donate_argnums=0)
    return jax.jit(train_step, donate_argnums=0,
                   in_shardings=(shardings.state, shardings.teacher, shardings.batch),
                   out_shardings=(shardings.state, shardings.replicated))


def eval_step_fn(student: nn.Module, guidance: Guidance | None = None
                 ) -> Callable[[TrainState, Variables | None, Batch], Metrics]:
    """eval_step(state, teacher_variables, batch) -> metrics, not yet jitted: inference mode, padding
    weighted 0. Metrics are sums over the batch (with "count"), so that batches of a split add up exactly."""

    def eval_step(state: TrainState, teacher_variables: Variables | None, batch: Batch) -> Metrics:
        _, (metrics, _) = loss_terms(student, guidance, state.params, state.batch_stats,
                                     teacher_variables, batch, state.step, False, state.constants)
        count = jnp.sum(batch["weight"])
        sums = {k: v * count for k, v in metrics.items()}
        sums["count"] = count
        return sums
    return eval_step


def make_eval_step(student: nn.Module, guidance: Guidance | None = None, shardings: StepShardings | None = None
                   ) -> Callable[[TrainState, Variables | None, Batch], Metrics]:
    """jit(eval_step(state, teacher_variables, batch) -> metrics), one batch per call (see `eval_step_fn`).
    With `shardings`, compiled for their mesh like the train step (metrics replicated)."""
    eval_step = eval_step_fn(student, guidance)
    if shardings is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, in_shardings=(shardings.state, shardings.teacher, shardings.batch),
                   out_shardings=shardings.replicated)
