"""Members on 8 simulated CPU devices, for tests/test_members.py (which sets
XLA_FLAGS=--xla_force_host_platform_device_count=8). Prints one JSON line:

  difference: {mesh: the largest parameter difference of 8 members (level 1, 2 epochs) against the same
    members on 1 device}
  collectives: {mesh: {"train", "evaluate", "guided train": the collective ops in the compiled program}}
  across_members: {mesh: the collectives (program: op) whose device groups span more than one member's
    devices (more than one index of the ensemble axis): none is expected, whatever the data axis does}
  control: across_members of a program that sums over the members (the check sees such communication)
"""
import json
import re
import sys
from typing import Any
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import conftest  # noqa: E402,F401  (the tests' compilation cache and determinism)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from sal_jax import members  # noqa: E402
from sal_jax.step import level_variables  # noqa: E402
from sal_jax.teacher_cache import teacher_cache  # noqa: E402
from test_members import case, max_difference, member_run, setup  # noqa: E402

SEEDS = tuple(range(8))
MESHES = {"ensemble 8": (8, 1), "ensemble 4 x data 2": (4, 2)}
COLLECTIVE = re.compile(r"\s(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(")
IOTA = re.compile(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?")
MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))? \{([^}]*)\}")
LISTED = re.compile(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}")


def collectives(compiled) -> list[str]:
    """The collective ops of a compiled program's optimized HLO."""
    return sorted(set(COLLECTIVE.findall(compiled.as_text())))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _iota(shape: list[int], reshape: list[int], perm: str | None) -> np.ndarray:
    ids = np.arange(int(np.prod(reshape))).reshape(reshape)
    return (ids.transpose(_ints(perm)) if perm else ids).reshape(shape)


def device_groups(line: str) -> list[list[int]]:
    """The device groups of one collective op in optimized HLO, in the three notations XLA prints:
    listed {{0,1},{2,3}}, iota [4,2]<=[8] (T(...): transposed first), and mesh['axis_0'=4,...] {'axis_1'}
    (groups along the named axes of a device-id array)."""
    if m := LISTED.search(line):
        return [_ints(g.strip("{}")) for g in re.findall(r"\{[\d,]*\}", m.group(1))]
    if m := IOTA.search(line):
        shape = _ints(m.group(1))
        return _iota(shape, _ints(m.group(2)), m.group(3)).reshape(shape[0], -1).tolist()
    if m := MESH_GROUPS.search(line):
        axes = re.findall(r"'(\w+)'=(\d+)", m.group(1))
        sizes = [int(size) for _, size in axes]
        ids = _iota(sizes, _ints(m.group(2)) if m.group(2) else sizes, m.group(3))
        along = [i for i, (name, _) in enumerate(axes) if f"'{name}'" in m.group(4)]
        rest = [i for i in range(len(axes)) if i not in along]
        return ids.transpose(rest + along).reshape(-1, int(np.prod([sizes[i] for i in along]))).tolist()
    raise AssertionError(f"a collective's replica groups in an unknown notation: {line[:300]}")


def across_members(compiled, mesh) -> list[str]:
    """The collectives of a compiled program whose device groups hold devices of different ensemble indices."""
    member_of = {device.id: index[0] for index, device in np.ndenumerate(mesh.devices)}
    found = []
    for line in compiled.as_text().splitlines():
        op = COLLECTIVE.search(line)
        if op and any(len({member_of[d] for d in group}) > 1 for group in device_groups(line)):
            found.append(op.group(1))
    return found


def compiled_programs(mesh) -> dict[str, Any]:
    """Lowers and compiles level 1's train and eval programs and a guided level 2's (its teachers' cached
    outputs gathered per member) for the members of SEEDS on `mesh`; runs nothing."""
    levels, data, config = case("mlp")
    batch, steps = config.train.batch_size, len(data.x_train) // config.train.batch_size
    shardings = members.member_shardings(mesh)
    source = members.device_source({"x": data.x_train, "y": data.y_train}, mesh)
    plans = jax.device_put(members.member_plans(len(data.x_train), batch, members.epoch_orders(
        len(data.x_train), SEEDS, 1, 1, 0), steps), shardings.plans)
    tx = members.member_optimizer(config.train)
    teachers = members.initial_states(levels[0], tx, data.x_train[:batch], SEEDS, 1)
    out = {}
    for level, name in ((1, "train"), (2, "guided train")):
        guidance, sample_x = setup(levels[level - 1], data, config, level, levels[0] if level == 2 else None)
        states = members.initial_states(levels[level - 1], tx, sample_x, SEEDS, level, guidance)
        inputs = members.MemberInputs() if level == 1 else members.MemberInputs(
            teacher=level_variables(teachers), own=members.stack([teacher_cache(
                guidance, level_variables(members.member(teachers, 0)), data.x_train, batch)] * len(SEEDS)))
        states, inputs = jax.device_put((states, inputs), shardings.members)
        step = members.member_step_fn(levels[level - 1], tx, guidance)
        sums, health = members.member_zeros(step, states, inputs, source, mesh)
        train = members.make_member_train(step, mesh)
        out[name] = train.lower(states, inputs, source, plans, 0, steps, sums, health).compile()
        if level == 1:
            test_source = members.device_source({"x": data.x_test, "y": data.y_test}, mesh)
            plan = jax.device_put(members.member(members.member_plans(len(data.x_test), batch, [None]), 0),
                                  shardings.test_plan)
            zeros = members.eval_zeros(levels[0], None, states, inputs, test_source, mesh)
            evaluate = members.make_member_eval(levels[0], mesh=mesh)
            out["evaluate"] = evaluate.lower(states, inputs, test_source, plan, 0, len(plan["idx"]), zeros).compile()
    return out


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    levels, data, config = case("mlp")
    one, _, _ = member_run(levels, data, config, SEEDS)
    difference, found, across = {}, {}, {}
    for name, shape in MESHES.items():
        mesh = members.make_member_mesh(*shape)
        states, _, _ = member_run(levels, data, config, SEEDS, mesh=mesh)
        assert states.step.sharding.num_devices == 8
        difference[name] = max_difference(jax.device_get(states.params), jax.device_get(one.params))
        programs = compiled_programs(mesh)
        found[name] = {program: collectives(compiled) for program, compiled in programs.items()}
        across[name] = {program: across_members(compiled, mesh) for program, compiled in programs.items()}
    mesh = members.make_member_mesh(4, 2)
    stacked = jax.device_put(jax.numpy.ones((8, 16)), members.member_shardings(mesh).members)
    control = across_members(jax.jit(lambda a: a.sum(0)).lower(stacked).compile(), mesh)
    print(json.dumps({"difference": difference, "collectives": found, "across_members": across, "control": control}))


if __name__ == "__main__":
    main()
