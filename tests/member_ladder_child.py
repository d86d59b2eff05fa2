"""A members' ladder in a child process, for tests/test_member_loop.py: on 8 simulated CPU devices
(resuming what the parent stopped on 1), or as one of several processes (jax.distributed, gloo CPU
collectives on 127.0.0.1).

    member_ladder_child.py SPEC_JSON OUT_NPZ

SPEC_JSON holds {"config": ..., "seeds": [...], "settings": {...}}, and optionally "parallel_data": k (each
member's batch over k devices), "checkpoint_dir" (resumed from if it holds checkpoints), "log_dir" (each
member's TensorBoard under log_dir/member_<i>), "num_processes", "process_id", "port" (join a run of
several processes; OUT_NPZ then gets ".p<process id>" before ".npz"). The ladder runs on conftest.blobs().
OUT_NPZ receives every member's SAL level variables ("<member>/<run>/<path>") and the (ensemble, data)
shape of each level's mesh ("meshes").
"""
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import conftest  # noqa: E402  (the tests' compilation cache and determinism)
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from sal_jax import members, parallel  # noqa: E402
from sal_jax.ladder import train_members  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402


def main(spec_json: str, out: str) -> None:
    spec = json.loads(Path(spec_json).read_text())
    config, data = ml_collections.ConfigDict(spec["config"]), conftest.blobs()
    config.parallel.data = spec.get("parallel_data", config.parallel.data)  # result-neutral: resumes anyway
    if spec.get("num_processes", 1) > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        config.parallel.coordinator_address = f"127.0.0.1:{spec['port']}"
        config.parallel.num_processes, config.parallel.process_id = spec["num_processes"], spec["process_id"]
        assert parallel.initialize_distributed(config.parallel)
        out = out.replace(".npz", f".p{spec['process_id']}.npz")
    levels = make_ladder(config.model, data.num_classes)
    meshes, make_mesh = [], members.make_member_mesh  # the meshes the members' levels train on
    members.make_member_mesh = lambda *args, **kwargs: meshes.append(make_mesh(*args, **kwargs)) or meshes[-1]
    logs = spec.get("log_dir") and [f"{spec['log_dir']}/member_{i}" for i in range(len(spec["seeds"]))]
    results = train_members(levels, data, config, spec["seeds"], checkpoint_dir=spec.get("checkpoint_dir"),
                            settings=spec["settings"], log_dirs=logs)
    arrays = {}
    for i, result in enumerate(results):
        for j, run in enumerate(result.sal):
            for path, leaf in jax.tree_util.tree_flatten_with_path(run.variables)[0]:
                arrays[f"{i}/{j}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    arrays["meshes"] = np.asarray([(mesh.shape[members.ENSEMBLE], mesh.shape["data"]) for mesh in meshes])
    arrays["processes"] = np.asarray([len({d.process_index for d in mesh.devices.flat}) for mesh in meshes])
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
