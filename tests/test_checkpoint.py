"""Exact resume after SIGKILL and SIGTERM anywhere in the ladder; corrupt checkpoints; config changes;
loading a trained level from disk."""
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from checkpoint_child import child_config, phase_histories, phase_leaves
from conftest import blobs
from nnx_models import resnet_ladder
from promises import REPRODUCIBLE, assert_reproduced
from sal_jax.checkpoint import config_differences, flat_config, load_level
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.levels import predict
from sal_jax.models import MLP, make_ladder

CHILD = Path(__file__).resolve().parent / "checkpoint_child.py"
# Each phase (a level in a round, then the epoch-matched baseline) is 3 epochs x 4 steps. One round:
# 48 steps, phases end at 12, 24, 36, 48. Two rounds: round 2 is steps 37-72, the baseline 73-96.
PHASE_STEPS = 12
TOTAL_STEPS = 48


@pytest.fixture(scope="module")
def references():
    """(rounds, width) -> the uninterrupted run's final variables of every phase, in process, without
    checkpoints."""
    cache = {}

    def reference(rounds: int = 1, width: int = 16) -> list[np.ndarray]:
        if (rounds, width) not in cache:
            config = child_config(rounds, width=width)
            result = train_ladder(make_ladder(config.model, 3), blobs(), config)
            cache[rounds, width] = [np.asarray(leaf) for leaf in phase_leaves(result)]
        return cache[rounds, width]
    return reference


@pytest.fixture(scope="module")
def reference(references):
    return references(1)


def run_child(directory, out, mode="none", at=0, rounds=1, steps_per_call=1, family="mlp", width=16):
    return subprocess.run([sys.executable, str(CHILD), str(directory), str(out), mode, str(at), str(rounds),
                           str(steps_per_call), family, str(width)], capture_output=True, text=True, timeout=300)


# Where a backend does not reproduce a program bit for bit (a GPU outside deterministic mode), an
# interrupted run still continues the same computation: equal to float32 rounding, grown over up to
# 120 Adam steps at lr 3e-2 (test_parallel measures <= 1e-6 after 24 steps at lr 1e-2 across meshes).
RESUME_ATOL = 1e-4


def assert_bit_identical(out, reference):
    """The child's saved variables equal the uninterrupted run's: bitwise where promises.py says so."""
    saved = np.load(out)
    leaves = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert len(leaves) == len(reference)
    assert_reproduced(leaves, reference, atol=RESUME_ATOL)


def kill_and_resume(directory, out, kills, rounds=1, family="mlp"):
    """Runs the child once per kill in `kills` (each must die by SIGKILL), then once to the end."""
    for mode, at in kills:
        proc = run_child(directory, out, mode, at, rounds, family=family)
        assert proc.returncode == -9, (mode, at, proc.stderr[-2000:])
    proc = run_child(directory, out, rounds=rounds, family=family)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming" in proc.stderr
    assert not list(Path(directory).glob("*.orbax-checkpoint-tmp*"))  # no half-written save left behind


def assert_each_step_logged_once(directory: Path, phase_steps: dict[str, int]) -> None:
    """TensorBoard shows every training step of every phase exactly once, however often the run died:
    a resumed phase hides what the killed attempt wrote after its checkpoint."""
    from test_summaries import read_run, scalars

    assert sorted(p.name for p in directory.iterdir()) == sorted(phase_steps)
    for name, steps in phase_steps.items():
        logged, loss = scalars(read_run(directory / name), "train/loss")
        assert logged == list(range(1, steps + 1)), name
        assert np.isfinite(loss).all()


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path, reference):
    """One run killed again and again: at random steps mid-level (seeded), at a level's last step
    (before its end is saved) and right after a level's end is saved; then it finishes."""
    steps = sorted(random.Random(0).sample([s for s in range(2, TOTAL_STEPS) if s % PHASE_STEPS], 2))
    kills = [("kill", steps[0]), ("kill", 12), ("kill_after_level", 2), ("kill", steps[1])]
    kills.sort(key=lambda k: k[1] if k[0] == "kill" else 12 * k[1] + 0.5)
    kill_and_resume(tmp_path / "ckpt", tmp_path / "final.npz", kills)
    assert_bit_identical(tmp_path / "final.npz", reference)
    assert_each_step_logged_once(tmp_path / "ckpt_tensorboard", {
        "level1": PHASE_STEPS, "level2": PHASE_STEPS, "level3": PHASE_STEPS, "plain_epoch_matched": PHASE_STEPS})


def test_sigkill_during_round_2_then_resume_is_bit_identical_in_every_phase(tmp_path, references):
    """Round 2 starts every level from its round-1 variables, which stay part of the result and of
    every checkpoint: killed at random steps of round 2 (seeded), at the last step of its first level
    and right after its second level's end is saved, the run still ends bit-identical in all 7 phases."""
    round_2 = range(3 * PHASE_STEPS + 1, 6 * PHASE_STEPS)
    steps = sorted(random.Random(2).sample([s for s in round_2 if s % PHASE_STEPS], 2))
    kills = sorted([("kill", steps[0]), ("kill", 4 * PHASE_STEPS), ("kill_after_level", 5), ("kill", steps[1])],
                   key=lambda k: k[1] if k[0] == "kill" else PHASE_STEPS * k[1] + 0.5)
    kill_and_resume(tmp_path / "ckpt", tmp_path / "final.npz", kills, rounds=2)
    assert_bit_identical(tmp_path / "final.npz", references(2))
    assert_each_step_logged_once(tmp_path / "ckpt_tensorboard", {
        **{f"round{r}_level{k}": PHASE_STEPS for r in (1, 2) for k in (1, 2, 3)},
        "plain_epoch_matched": 2 * PHASE_STEPS})


def test_glai_killed_in_and_around_its_structure_phase_resumes_bit_identical(tmp_path):
    """A GLAI ladder (each level a structure phase of 1 or 2 epochs, as its monitor decides, then the value
    phase) killed inside the first structure phase (the monitor's pattern of the initial weights must come
    back with the progress), right after that phase's end is saved (the freeze happens on resume), and
    once later: the final variables and every history, flip fractions included, equal the uninterrupted
    run's."""
    config = child_config(family="glai")
    result = train_ladder(make_ladder(config.model, 3), blobs(), config)
    assert any("structure_flips" in row for row in result.sal[0].history)
    kills = [("kill", 2), ("kill_after_level", 1), ("kill", 17)]
    kill_and_resume(tmp_path / "ckpt", tmp_path / "final.npz", kills, family="glai")
    assert_bit_identical(tmp_path / "final.npz", [np.asarray(leaf) for leaf in phase_leaves(result)])
    assert_reproduced(json.loads((tmp_path / "final.npz.json").read_text()), phase_histories(result),
                      atol=RESUME_ATOL)


def test_sparse_levels_killed_around_their_evolution_resume_bit_identical(tmp_path):
    """Sparse levels (masks in the state, evolved and pruned between epochs of 4 steps, keys from the
    epoch): killed at an epoch's last step (before the evolution), right after the next epoch's first
    step and after a level's end is saved; the final variables, masks included, and every
    history (live connections, alive units) equal the uninterrupted run's."""
    config = child_config(family="set_mlp")
    result = train_ladder(make_ladder(config.model, 3), blobs(), config)
    assert [row["alive_units"] for row in result.sal[0].history] == [16.0, 8.0, 8.0]  # half pruned after epoch 1
    kills = [("kill", 4), ("kill", 5), ("kill_after_level", 1)]
    kill_and_resume(tmp_path / "ckpt", tmp_path / "final.npz", kills, family="set_mlp")
    assert_bit_identical(tmp_path / "final.npz", [np.asarray(leaf) for leaf in phase_leaves(result)])
    assert_reproduced(json.loads((tmp_path / "final.npz.json").read_text()), phase_histories(result),
                      atol=RESUME_ATOL)


def test_nnx_levels_killed_mid_level_resume_bit_identical(tmp_path):
    """NNX levels (tests/nnx_models.py: BatchNorm statistics and a Dropout RNG stream in their state, features
    named): killed in the middle of level 2 (step 18 of 12-24); params, statistics, RNG counts and every
    history equal the uninterrupted run's; a trained level loads from the checkpoint with its module."""
    config = child_config(family="nnx")
    result = train_ladder(resnet_ladder(config.model.levels, 8, 16, 3), blobs(), config)
    kill_and_resume(tmp_path / "ckpt", tmp_path / "final.npz", [("kill", 18)], family="nnx")
    assert_bit_identical(tmp_path / "final.npz", [np.asarray(leaf) for leaf in phase_leaves(result)])
    assert_reproduced(json.loads((tmp_path / "final.npz.json").read_text()), phase_histories(result),
                      atol=RESUME_ATOL)
    levels = resnet_ladder(config.model.levels, 8, 16, 3)  # a trained NNX level loads with its module
    module, variables = load_level(str(tmp_path / "ckpt"), 3, module=levels[2])
    np.testing.assert_array_equal(predict(module, variables, blobs().x_test), predict(module, result.levels[2],
                                                                                      blobs().x_test))


def test_glai_two_rounds_with_checkpoints_equal_two_rounds_without(tmp_path):
    """GLAI levels freeze in round 1 and stay frozen: round 2 continues each level's values with the same
    structure and no structure phase; saving every 5 steps changes no bit of any phase or history."""
    config = child_config(rounds=2, family="glai")
    config.model.levels = (1, 2)
    plain = train_ladder(make_ladder(config.model, 3), blobs(), config)
    saved = train_ladder(make_ladder(config.model, 3), blobs(), config, checkpoint_dir=str(tmp_path / "ckpt"))
    assert_reproduced([np.asarray(leaf) for leaf in phase_leaves(saved)], [np.asarray(leaf) for leaf in phase_leaves(plain)],
                      atol=RESUME_ATOL)
    assert phase_histories(saved) == phase_histories(plain) or not REPRODUCIBLE
    round_1, round_2 = plain.sal[:2], plain.sal[2:]
    for first, second in zip(round_1, round_2):
        assert any("structure_flips" in row for row in first.history)
        assert not any("structure_flips" in row for row in second.history)
        jax.tree.map(np.testing.assert_array_equal, second.variables["structure"], first.variables["structure"])


def test_three_rounds_with_checkpoints_equal_three_rounds_without(tmp_path, references):
    """In process, saving every 5 steps through every round: every phase's returned variables are
    readable and bit-identical to the run without checkpoints; rerunning finds nothing to do."""
    config = child_config(rounds=3)
    directory = str(tmp_path / "ckpt")
    result = train_ladder(make_ladder(config.model, 3), blobs(), config, checkpoint_dir=directory)
    assert [(run.round, run.level) for run in result.sal] == [(r, k) for r in (1, 2, 3) for k in (1, 2, 3)]
    assert_reproduced([np.asarray(leaf) for leaf in phase_leaves(result)], references(3), atol=RESUME_ATOL)
    again = train_ladder(make_ladder(config.model, 3), blobs(), config, checkpoint_dir=directory)
    assert_reproduced([np.asarray(leaf) for leaf in phase_leaves(again)], references(3), atol=RESUME_ATOL)


def test_sigint_and_sigterm_save_stop_and_resume_bit_identical(tmp_path, reference):
    """Ctrl-C (SIGINT) and SIGTERM mid-level save at the next step and exit 130 and 143; a SIGTERM while
    a phase sets up (here: its teacher cache, after resuming mid-level 3) stops there, before any step."""
    out, directory = tmp_path / "final.npz", tmp_path / "ckpt"
    for mode, at, code in (("int", 7, 130), ("term", 30, 143)):  # mid-level, off the save interval
        proc = run_child(directory, out, mode, at)
        assert proc.returncode == code, proc.stderr[-2000:]
        name = "SIGINT" if mode == "int" else "SIGTERM"
        assert f"preempted ({name}): saved after training step {at + 1}, in 'SAL r1 L" in proc.stderr
    proc = run_child(directory, out, "term_in_setup", 1)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert ("preempted (SIGTERM): nothing trained since training step 31 (saved), while 'SAL r1 L3' was "
            "setting up") in proc.stderr
    proc = run_child(directory, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"(training step {30 + 1})" in proc.stderr  # resumed exactly where SIGTERM saved
    assert_bit_identical(out, reference)


def test_calls_of_several_steps_save_exactly_stop_within_one_call_and_resume_bit_identical(tmp_path, reference):
    """steps_per_call=3, saves every 5 steps, 4 steps an epoch: calls end at the epoch's end and at every
    save (run steps 3, 4, 5, 8, 10, 12, 15, ...). SIGTERM after the call that reaches step 8 takes effect
    at the end of the next call (step 10, the save point); a SIGKILL right after step 15's save; then the
    run finishes bit-identical to the uninterrupted one (which ran one step per call)."""
    out, directory = tmp_path / "final.npz", tmp_path / "ckpt"
    proc = run_child(directory, out, "term", 7, steps_per_call=3)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "preempted (SIGTERM): saved after training step 10, in 'SAL r1 L1'" in proc.stderr
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())[-1] >= 2  # steps 5 and 10
    proc = run_child(directory, out, "kill", 14, steps_per_call=3)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "(training step 10)" in proc.stderr
    proc = run_child(directory, out, steps_per_call=3)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming" in proc.stderr
    assert_bit_identical(out, reference)


FAILING_SAVES = """
import sys
sys.path[:0] = [sys.argv[2]]
import jax.numpy as jnp, orbax.checkpoint as ocp
from checkpoint_child import child_config
from sal_jax.checkpoint import RunCheckpointer, Snapshot
gone = jnp.ones(3)
gone.delete()
with RunCheckpointer(sys.argv[1], child_config(), {}) as checkpointer:
    for save in (lambda: checkpointer.manager.save(1, args=ocp.args.Composite(
                     meta=ocp.args.JsonSave({}), state=ocp.args.StandardSave({"w": gone})), force=True),
                 lambda: checkpointer.save(Snapshot([], state={"w": gone}))):
        try:
            save()
        except RuntimeError as error:
            print(str(error).splitlines()[0])
"""


def test_a_failed_save_is_an_error_within_seconds_not_a_hang(tmp_path):
    """A save that fails part-way (here: an array already deleted) once left Orbax's writer threads
    waiting 300 s for a step directory, and the process hung at exit. Now Orbax's own failure returns at
    once, and RunCheckpointer.save names the missing array before anything is written."""
    proc = subprocess.run([sys.executable, "-c", FAILING_SAVES, str(tmp_path / "ckpt"), str(CHILD.parent)],
                          capture_output=True, text=True, timeout=60)  # the hang was 300 s; a run takes ~2 s
    assert proc.returncode == 0, proc.stderr[-2000:]
    orbax_error, our_error = proc.stdout.splitlines()
    assert "deleted" in orbax_error
    assert our_error == ("checkpoint: cannot save the train state: its array ['w'] has been deleted "
                         "(donated to a train step?)")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A checkpoint directory of a run killed at step 22 (checkpoints at steps 12 [level end], 15, 20)."""
    directory = tmp_path_factory.mktemp("interrupted") / "ckpt"
    assert run_child(directory, directory.parent / "x.npz", "kill", 22).returncode == -9
    return directory


def saved_numbers(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def warnings_in(stderr: str) -> list[str]:
    """Our warning lines; nothing else may look like a warning (no Python UserWarning, no absl "W..." line)."""
    assert "UserWarning" not in stderr and not re.search(r"^(W\d{4} |WARNING:absl:)", stderr, re.M), stderr
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, interrupted, reference, capfd):
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(interrupted, directory)
    latest = saved_numbers(directory)[-1]
    for f in (directory / str(latest) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0garbage" * 3)  # corrupt every data file of the newest checkpoint
    result = train_ladder(make_ladder(child_config().model, 3), blobs(), child_config(), checkpoint_dir=str(directory))
    # one line of ours, without the TensorStore spec (a pybind repr) that Orbax's error appends
    [line] = warnings_in(capfd.readouterr().err)
    assert re.fullmatch(rf"warning: checkpoint {latest} in {directory} is unreadable \([^\n]{{10,200}}\); "
                        rf"falling back to checkpoint {latest - 1}", line) and "TensorStore" not in line, line
    assert_reproduced([np.asarray(leaf) for leaf in phase_leaves(result)], reference, atol=RESUME_ATOL)


def test_load_level_skips_a_corrupt_checkpoint_and_leaves_it_in_place(tmp_path, interrupted, capfd):
    """Reading a run's directory falls back like resuming it does, but deletes nothing."""
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(interrupted, directory)
    latest = saved_numbers(directory)[-1]
    for f in (directory / str(latest) / "finished").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0garbage" * 3)
    module, variables = load_level(str(directory), 1)
    [line] = warnings_in(capfd.readouterr().err)
    assert re.fullmatch(rf"warning: checkpoint {latest} in {directory} is unreadable \(.*\); falling back to "
                        rf"checkpoint {latest - 1}", line), line
    assert module == make_ladder(child_config().model, 3)[0] and jax.tree.leaves(variables)
    assert (directory / str(latest)).is_dir()


def test_an_unfinished_save_left_by_a_kill_is_removed_without_a_warning(tmp_path, interrupted, reference):
    """A SIGKILL during a save leaves <n>.orbax-checkpoint-tmp; Orbax warned about it (an absl "W... atomicity.py]
    Attempted to create temporary directory ... which already exists" line) on every rerun, when its next
    save reached number n. Now the rerun removes it as it opens the directory, silently: it is expected."""
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(interrupted, directory)
    for leftover in directory.glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(leftover)
    latest = saved_numbers(directory)[-1]
    shutil.copytree(directory / str(latest), directory / f"{latest + 1}.orbax-checkpoint-tmp")  # save n + 1, killed
    proc = run_child(directory, tmp_path / "final.npz")  # a process of its own: absl's log goes to its stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert warnings_in(proc.stderr) == [] and "orbax-checkpoint-tmp" not in proc.stderr, proc.stderr[-2000:]
    assert not list(directory.glob("*.orbax-checkpoint-tmp*"))
    assert_bit_identical(tmp_path / "final.npz", reference)


# Damaged array data. Orbax (OCDBT) keeps an array of up to 1 KiB compressed inside a tree node, which
# carries a crc32c: damage there is an Orbax read error (above). A larger one is a zstd frame of its own
# in a data file <item>/ocdbt.process_0/d/<id>, without a checksum: inverted bytes there mostly decode to
# other numbers, silently. So these runs are 32 wide (32 x 32 kernels, ~4 KiB each).
WIDE = 32
ZSTD_FRAME = bytes.fromhex("28b52ffd")


@pytest.fixture(scope="module")
def wide_preempted(tmp_path_factory):
    """Checkpoints 8 (training step 30) and 9 (step 33, in level 3: levels 1 and 2 finished) of a run stopped
    by SIGTERM (which waits for its saves, unlike SIGKILL: the same checkpoints every time)."""
    directory = tmp_path_factory.mktemp("wide") / "ckpt"
    proc = run_child(directory, directory.parent / "x.npz", "term", 32, width=WIDE)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert saved_numbers(directory) == [8, 9]
    return directory


def invert_array_bytes(item: Path) -> None:
    """Inverts 4 bytes in the middle of the largest array value of checkpoint item `item` (e.g. <n>/state),
    as a failing disk or a partial copy leaves them. Values are zstd frames, several to a data file; tree
    nodes are files of their own that start with OCDBT's header."""
    frames = []  # (size, file, start)
    for path in item.glob("ocdbt.process_0/d/*"):
        data = path.read_bytes()
        if data.startswith(ZSTD_FRAME):
            starts = [match.start() for match in re.finditer(re.escape(ZSTD_FRAME), data)]
            frames += [(end - start, path, start) for start, end in zip(starts, starts[1:] + [len(data)])]
    assert frames, f"no array value outside the tree nodes in {item}"
    size, path, start = max(frames)
    data = bytearray(path.read_bytes())
    middle = start + size // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    path.write_bytes(data)


def damaged(directory: Path, number: int, item: str, then: str) -> str:
    """The warning line for an array of `item` in checkpoint `number` that does not match its checksum."""
    return (rf"warning: checkpoint {number} in {directory} is damaged \(array {item}/[\w/]+ does not match its "
            rf"checksum; saved after training step \d+\); {then}")


def resume_wide(directory: Path):
    config = child_config(width=WIDE)
    return [np.asarray(leaf) for leaf in phase_leaves(train_ladder(make_ladder(config.model, 3), blobs(), config,
                                                                   checkpoint_dir=str(directory)))]


def test_damaged_array_bytes_in_the_newest_checkpoint_are_detected_and_skipped(tmp_path, wide_preempted,
                                                                               references, capfd):
    """Before checksums, the run resumed from the damaged state and ended with other weights (or diverged)."""
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(wide_preempted, directory)
    invert_array_bytes(directory / "9" / "state")
    result = resume_wide(directory)
    [line] = warnings_in(capfd.readouterr().err)
    assert re.fullmatch(damaged(directory, 9, "state", "falling back to checkpoint 8"), line), line
    assert_reproduced(result, references(1, WIDE), atol=RESUME_ATOL)


def test_damaged_array_bytes_in_every_checkpoint_start_the_run_from_scratch(tmp_path, wide_preempted,
                                                                            references, capfd):
    """The newest and the older checkpoint damaged (the older in a finished level's variables): both are
    reported and deleted, and the run starts again, saying so."""
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(wide_preempted, directory)
    invert_array_bytes(directory / "9" / "state")
    invert_array_bytes(directory / "8" / "finished")
    result = resume_wide(directory)
    lines = warnings_in(capfd.readouterr().err)
    assert len(lines) == 2, lines
    assert re.fullmatch(damaged(directory, 9, "state", "falling back to checkpoint 8"), lines[0]), lines[0]
    assert re.fullmatch(damaged(directory, 8, "finished", "no readable checkpoint left: starting from scratch"),
                        lines[1]), lines[1]
    assert_reproduced(result, references(1, WIDE), atol=RESUME_ATOL)


def test_damaged_finished_level_variables_are_detected_by_resume_and_by_load_level(tmp_path, wide_preempted,
                                                                                   references, capfd):
    """Level 2's saved variables damaged in the newest checkpoint: resuming falls back to the previous
    checkpoint (before checksums, level 3 trained against the damaged teacher); load_level falls back too,
    and leaves the damaged checkpoint in place."""
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(wide_preempted, directory)
    invert_array_bytes(directory / "9" / "finished")
    _, variables = load_level(str(directory), 2)
    [line] = warnings_in(capfd.readouterr().err)
    assert re.fullmatch(damaged(directory, 9, "finished", "falling back to checkpoint 8"), line), line
    assert saved_numbers(directory) == [8, 9]
    _, undamaged = load_level(str(wide_preempted), 2)  # level 2 as checkpoints 8 and 9 saved it
    jax.tree.map(np.testing.assert_array_equal, variables, undamaged)
    result = resume_wide(directory)
    [line] = warnings_in(capfd.readouterr().err)
    assert re.fullmatch(damaged(directory, 9, "finished", "falling back to checkpoint 8"), line), line
    assert_reproduced(result, references(1, WIDE), atol=RESUME_ATOL)


def test_checkpoint_saves_are_not_training_time(tmp_path, monkeypatch):
    """Saving after every step, each save made 0.1 s slower: SAL's training time, the time-matched
    baseline's budget, stays that of the run without checkpoints (within noise) instead of growing by
    the 36 steps x 0.1 s = 3.6 s (plus the saves' own time) it grew by when saves were charged."""
    from sal_jax import checkpoint
    config = child_config()
    config.checkpoint.every_steps = 1
    save = checkpoint.RunCheckpointer.save

    def slow_save(self, snapshot):
        time.sleep(0.1)
        save(self, snapshot)

    monkeypatch.setattr(checkpoint.RunCheckpointer, "save", slow_save)
    without = train_ladder(make_ladder(config.model, 3), blobs(), config)
    saved = train_ladder(make_ladder(config.model, 3), blobs(), config, checkpoint_dir=str(tmp_path / "ckpt"))
    assert saved.sal_train_time - without.sal_train_time < 1.5, (saved.sal_train_time, without.sal_train_time)


def test_a_changed_config_is_refused_naming_the_keys(tmp_path, interrupted):
    import shutil
    directory = tmp_path / "ckpt"
    shutil.copytree(interrupted, directory)
    changed = child_config()
    changed.train.learning_rate, changed.guidance.temperature = 1e-3, 2.0
    changed.checkpoint.every_steps = 7  # checkpoint settings do not change results: not reported
    with pytest.raises(ConfigError, match=r"config differs from the run in .* in guidance.temperature, "
                                          r"train.learning_rate; use another workdir, or set "
                                          r"--config.checkpoint.allow_config_change=True"):
        train_ladder(make_ladder(changed.model, 3), blobs(), changed, checkpoint_dir=str(directory))
    changed.checkpoint.allow_config_change = True
    result = train_ladder(make_ladder(changed.model, 3), blobs(), changed, checkpoint_dir=str(directory))
    assert len(result.sal) == 3


def test_a_key_added_after_the_checkpoint_counts_only_when_not_at_its_default():
    saved = flat_config(child_config())
    del saved["guidance.cache_teacher"]  # as in a checkpoint written before the key existed
    assert config_differences(saved, child_config()) == []
    changed = child_config()
    changed.guidance.cache_teacher = False
    assert config_differences(saved, changed) == ["guidance.cache_teacher"]
    changed.train.epochs += 1
    assert config_differences(saved, changed) == ["guidance.cache_teacher", "train.epochs"]


def test_load_a_trained_level_and_predict(tmp_path, reference):
    config = child_config()
    data = blobs()
    result = train_ladder(make_ladder(config.model, 3), data, config, checkpoint_dir=str(tmp_path / "run"))
    for level in (1, 3):
        module, variables = load_level(str(tmp_path / "run"), level)
        assert module == make_ladder(config.model, 3)[level - 1]
        # the restored variables are a copy: the same program on the same inputs
        assert_reproduced(predict(module, variables, data.x_test), predict(module, result.levels[level - 1],
                                                                           data.x_test), atol=1e-6)
    with pytest.raises(ConfigError, match="no checkpoint directory at"):
        load_level(str(tmp_path / "missing"), 1)


def test_load_level_names_unfinished_levels(interrupted):
    with pytest.raises(ConfigError, match=r"level 3 has not finished training in .* \(finished levels: \[1\]\)"):
        load_level(str(interrupted), 3)


class OwnLevel(nn.Module):
    """A user's level: not a built-in family, so the checkpoint's config cannot rebuild it."""

    width: int

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.width, name="hidden")(x))
        return nn.Dense(3, name="out")(h), (h,)


@pytest.mark.parametrize("levels, difference", [
    ([OwnLevel(4), OwnLevel(8)], r"it has no parameters dense_0/kernel"),
    # built-in classes, but not the ladder the config describes (width 16): same names, other shapes
    ([MLP(1, 5, 3), MLP(2, 5, 3)], r"\['params'\]\['dense_0'\]\['bias'\] has shape \(5,\), the built-in "
                                   r"level's \(16,\)"),
])
def test_load_level_of_a_users_own_ladder_asks_for_its_module(tmp_path, levels, difference):
    config = child_config()
    config.model.levels, config.train.epochs = (1, 2), 1
    config.baselines.epoch_matched = False
    directory = str(tmp_path / "run")
    train_ladder(levels, blobs(), config, checkpoint_dir=directory)
    with pytest.raises(ConfigError) as info:
        load_level(directory, 2)
    message = str(info.value)
    assert re.fullmatch(rf"level 2 in .*/run does not match the built-in 'mlp' level its config describes "
                        rf"\({difference}\): the run trained modules of your own; pass one as "
                        rf"load_level\(directory, level, module=\.\.\.\)", message), message
    module, variables = load_level(directory, 2, module=levels[1])  # with its module, it loads and predicts
    assert module is levels[1]
    assert predict(module, variables, blobs().x_test).shape == (60, 3)
