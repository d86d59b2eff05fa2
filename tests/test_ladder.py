"""The top-down trainer and its baselines, end to end on a tiny task."""
import chex
import pytest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from promises import REPRODUCIBLE, assert_reproduced, assert_same_math
from sal_jax import parallel
from sal_jax.chunks import evaluate, make_eval_chunk, trace_step, zero_sums
from sal_jax.ladder import train_ladder
from sal_jax.level_loop import train_level
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


def test_a_nonfinite_loss_stops_the_level_at_its_step_naming_the_term(data, config):
    """One NaN input (past the dataset's checks), at example 17: the first step whose batch holds it is step pos // 32 + 1 of epoch 1
    (pos: 17's place in the epoch's order). Training stops there, mid-call (calls of 4 steps), naming the
    CE term: no later step, no other term."""
    from sal_jax.data.arrays import epoch_order
    from sal_jax.errors import TrainingDiverged

    data.x_train[17, 3] = np.nan  # after the dataset's own checks, which would refuse it
    config.train.steps_per_call = 4
    step = int(np.flatnonzero(epoch_order(150, config.seed, 1, 1, 0) == 17)[0]) // 32 + 1
    level = make_ladder(config.model, data.num_classes)[0]
    with pytest.raises(TrainingDiverged) as stop:
        train_level(level, data, config, level=1, name="top")
    message = str(stop.value)
    assert message.startswith(f"top (level 1, round 1), training step {step}: the ce term went non-finite first (")
    assert "\n" not in message and "loss=nan, ce=nan" in message


def test_a_nonfinite_teacher_names_the_guidance_terms_at_the_first_step(data, config):
    """A teacher whose parameters are NaN: its features and logits are NaN, so at step 1 the hidden and
    output terms are non-finite while the student's own CE is not."""
    from sal_jax.errors import TrainingDiverged

    teacher, student = make_ladder(config.model, data.num_classes)[:2]
    top = train_level(teacher, data, config, level=1)
    poisoned = jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), top.variables)
    with pytest.raises(TrainingDiverged, match=r"^level 2 \(level 2, round 1\), training step 1: the hidden and "
                                               r"output terms went non-finite first \(loss=nan, ce=[0-9.]+, "
                                               r"hidden=nan, output=nan\); training stopped there$"):
        train_level(student, data, config, level=2, teacher=(teacher, poisoned))


def test_a_diverging_run_keeps_its_checkpoints_and_stops_again_on_rerun(data, config, tmp_path):
    """SGD at learning rate 1e6 goes non-finite within the first epoch. The error names the checkpoint
    folder; the newest checkpoint there is from before the bad step, and a rerun resumes from it and
    stops at the same step."""
    from sal_jax.errors import TrainingDiverged

    config.train.optimizer, config.train.learning_rate = "sgd", 1e6
    config.checkpoint.every_steps = 2
    levels = make_ladder(config.model, data.num_classes)
    messages = []
    for _ in range(2):
        with pytest.raises(TrainingDiverged) as stop:
            train_ladder(levels, data, config, checkpoint_dir=str(tmp_path))
        messages.append(str(stop.value))
    assert messages[0] == messages[1]
    bad_step = int(messages[0].split("training step ")[1].split(":")[0])
    assert messages[0].endswith(f"; the checkpoints before it are kept in {tmp_path}")
    saved = sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit())
    assert saved and saved[-1] < bad_step


def test_a_finite_divergence_is_flagged_and_reported(data, config, capsys):
    """Adam at learning rate 1e6 stays finite on the top level but ends far above uniform guessing's
    cross-entropy (log 3): the run returns flagged, and says so on stderr. A sane run is not flagged."""
    level = make_ladder(config.model, data.num_classes)[0]
    assert not train_level(level, data, config, level=1).diverged
    config.train.learning_rate = 1e6
    run = train_level(level, data, config, level=1, name="top")
    assert run.diverged and run.history[-1]["train_ce"] > 2 * np.log(3)
    assert "warning: top diverged: its last epoch's training cross-entropy is" in capsys.readouterr().err


def test_a_nonfinite_cnn_step_is_found_where_the_host_dispatches_each_step(config):
    """A CNN on XLA:CPU runs each call as single-step dispatches (chunks.needs_host_loop), which go on
    past a bad step without waiting: the call still reports the first one. One NaN pixel in the epoch's
    first example: step 1 is bad, and steps 2 and 3 of the same call run on (on NaN weights)."""
    from sal_jax.data.arrays import ArrayDataset, epoch_order
    from sal_jax.errors import TrainingDiverged

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 96).astype(np.int32)
    data = ArrayDataset("images", x, y, x[:32], y[:32], num_classes=3)
    data.x_train[epoch_order(96, config.seed, 1, 1, 0)[0], 2, 2, 0] = np.nan  # after the dataset's own checks
    config.model.family, config.model.levels, config.model.channels = "cnn", (1,), (4,)
    config.train.steps_per_call = 3  # 3 steps an epoch: one call
    level = make_ladder(config.model, data.num_classes)[0]
    with pytest.raises(TrainingDiverged, match=r"^level 1 \(level 1, round 1\), training step 1: the ce term "):
        train_level(level, data, config, level=1)


def test_every_level_trained_plain_too(data, config):
    """config.baselines.every_level: each level also trains plain. Level 1 plain epoch-matched is SAL's
    level 1 (unguided, same init and batches: bit-identical); a level's time- and compute-matched budgets are
    SAL's time and FLOPs until that level was final; the bottom's baselines keep their names and place in the
    result."""
    from sal_jax.ladder import ladder_phases, phase_run_name

    config.baselines.every_level = True
    levels = make_ladder(config.model, data.num_classes)
    phases = ladder_phases(3, config)
    assert [p.name for p in phases[3:]] == [f"plain{level} ({kind}-matched)" for level in (" L1", " L2", "")
                                            for kind in ("epoch", "time", "compute")]
    assert [phase_run_name(p, 1, 3) for p in phases[3:6]] == ["plain_epoch_matched_level1",
                                                               "plain_time_matched_level1",
                                                               "plain_compute_matched_level1"]
    assert phase_run_name(phases[-1], 1, 3) == "plain_compute_matched"
    result = train_ladder(levels, data, config)
    assert sorted(result.plain) == [1, 2, 3] and result.plain[3]["plain_time_matched"] is result.plain_time_matched
    chex.assert_trees_all_equal(result.plain[1]["plain_epoch_matched"].variables, result.sal[0].variables)
    assert result.plain[1]["plain_epoch_matched"].history == [
        {**row, "train_time": r["train_time"]} for row, r in zip(result.sal[0].history,
                                                                  result.plain[1]["plain_epoch_matched"].history)]
    for level, budget in ((1, result.sal[0].train_time), (2, result.sal[0].train_time + result.sal[1].train_time)):
        assert result.plain[level]["plain_time_matched"].train_time >= budget
    for level in (1, 2, 3):
        budget = sum(run.flops for run in result.sal[:level])
        matched = result.plain[level]["plain_compute_matched"]
        assert matched.flop_budget == budget and matched.steps == matched.step_budget == budget // matched.step_flops
    assert result.plain[3]["plain_compute_matched"] is result.plain_compute_matched
    from sal_jax.report import ladder_record
    record = ladder_record(result, config.seed)
    assert sorted(record["plain_levels"]) == ["1", "2"] and sorted(record["plain_levels"]["1"]) == sorted(
        ["plain_epoch_matched", "plain_time_matched", "plain_compute_matched"])


def test_gradient_diagnostics_change_no_result(data, config):
    """config.guidance.gradient_diagnostics adds each guided epoch's diag_* row entries and nothing else:
    the ladder's levels are bit-identical to the run without (the unguided top level gets none)."""
    levels = make_ladder(config.model, data.num_classes)
    config.baselines.time_matched = False
    plain = train_ladder(levels, data, config)
    config.guidance.gradient_diagnostics = True
    diagnosed = train_ladder(levels, data, config)
    chex.assert_trees_all_equal(diagnosed.levels, plain.levels)
    assert not any(k.startswith("diag_") for k in diagnosed.sal[0].history[-1])
    for run in diagnosed.sal[1:]:
        assert {k for k in run.history[0] if k.startswith("diag_")} == {
            "diag_grad_norm_ce", "diag_grad_norm_hidden", "diag_grad_norm_output", "diag_grad_cos_ce_guidance"}


def stop_by_sigterm_after(monkeypatch, steps: int) -> None:
    """The checkpointer receives SIGTERM (from this process, to its own handler) after `steps` training
    steps of the run, as a scheduler's preemption would deliver it."""
    import os
    import signal

    from sal_jax import checkpoint

    hook = checkpoint.PhaseHook.after_call

    def after_call(self, loop, call):
        if self.store.run_step < steps <= self.store.run_step + call.steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return hook(self, loop, call)
    monkeypatch.setattr(checkpoint.PhaseHook, "after_call", after_call)


@pytest.mark.parametrize("stop", ["epochs", "budget", "signal"])
def test_the_last_row_of_a_level_is_evaluated_whatever_ends_it(data, config, stop, tmp_path, monkeypatch):
    """Evaluation every 2 epochs, levels of 3 epochs (4 steps each): the last row is evaluated all the same,
    whether the epochs ran out, a time budget ended inside the first epoch, or a SIGTERM stopped the
    run mid-level (resumed). (The GLAI freeze: tests/test_glai_training.py.)"""
    from sal_jax.checkpoint import Preempted

    config.train.eval_every = 2
    config.train.steps_per_call = 1
    levels = make_ladder(config.model, data.num_classes)
    if stop == "budget":  # one call, then the budget is spent: the level ends inside its first epoch
        runs = [train_level(levels[0], data, config, level=1, time_budget=1e-9)]
        assert [row["epoch"] for row in runs[0].history] == [1] and runs[0].steps == 1
    elif stop == "epochs":
        runs = train_ladder(levels, data, config).sal
    else:
        stop_by_sigterm_after(monkeypatch, 6)  # mid-epoch 2 of level 1
        with pytest.raises(Preempted):
            train_ladder(levels, data, config, checkpoint_dir=str(tmp_path))
        monkeypatch.undo()
        runs = train_ladder(levels, data, config, checkpoint_dir=str(tmp_path)).sal
        uninterrupted = train_ladder(levels, data, config).sal
        untimed = lambda runs: [[{k: v for k, v in row.items() if k != "train_time"} for row in run.history]
                                for run in runs]
        assert untimed(runs) == untimed(uninterrupted) or not REPRODUCIBLE
    for run in runs:
        assert "test_accuracy" in run.history[-1], run.name
        assert run.final_test_accuracy == run.history[-1]["test_accuracy"]
        if len(run.history) == 3:
            assert ["test_accuracy" in row for row in run.history] == [False, True, True]


def test_runs_that_differ_only_in_what_no_program_reads_share_the_compiled_levels(data, config):
    """A cell's hidden-only ablation after its SAL run: the unguided top level compiles nothing (its
    guidance weights, the baselines and the epochs are no input of its programs) and trains the same bits;
    the guided levels, whose step the weights change, compile their own."""
    from sal_jax import chunks

    levels = make_ladder(config.model, data.num_classes)
    cache = chunks.ProgramCache()
    sal = train_ladder(levels, data, config, program_cache=cache)
    assert len(cache) == 4  # levels 1-3 and the bottom's plain baselines (one program for both)
    config.guidance.output_weight = 0.0
    config.baselines.epoch_matched = config.baselines.time_matched = False
    config.checkpoint.every_steps = 7
    config.train.steps_per_call = 3
    ablation = train_ladder(levels, data, config, program_cache=cache)
    assert len(cache) == 6  # levels 2 and 3 again, guided another way
    assert ablation.sal[0].compile_time < sal.sal[0].compile_time / 10  # a look-up, not a compilation
    chex.assert_trees_all_equal(as_numpy(ablation.sal[0].variables), as_numpy(sal.sal[0].variables))
    config.train.epochs = 2  # the plain baseline of another length: the same program
    plain = train_level(levels[-1], data, config, level=3, program_cache=cache)
    assert len(cache) == 6 and plain.compile_time < sal.plain_epoch_matched.compile_time / 10
