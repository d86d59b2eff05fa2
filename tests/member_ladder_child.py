"""Resumes a members' ladder on 8 simulated CPU devices, for tests/test_member_loop.py (which stopped it
on 1 device and sets XLA_FLAGS=--xla_force_host_platform_device_count=8).

    member_ladder_child.py CONFIG_JSON CHECKPOINT_DIR OUT_NPZ

CONFIG_JSON holds {"config": ..., "seeds": [...], "settings": {...}, "parallel_data": k} (k: each member's
batch over k devices here); the ladder runs on conftest.blobs(). OUT_NPZ receives every member's SAL level
variables ("<member>/<run>/<path>") and the (ensemble, data) shape of each level's mesh ("meshes").
"""
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import conftest  # noqa: E402  (the tests' compilation cache and determinism)
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from sal_jax import members  # noqa: E402
from sal_jax.ladder import train_members  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402


def main(config_json: str, checkpoint_dir: str, out: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    spec = json.loads(Path(config_json).read_text())
    config, data = ml_collections.ConfigDict(spec["config"]), conftest.blobs()
    config.parallel.data = spec.get("parallel_data", config.parallel.data)  # result-neutral: resumes anyway
    levels = make_ladder(config.model, data.num_classes)
    meshes, make_mesh = [], members.make_member_mesh  # the meshes the members' levels train on
    members.make_member_mesh = lambda *args, **kwargs: meshes.append(make_mesh(*args, **kwargs)) or meshes[-1]
    results = train_members(levels, data, config, spec["seeds"], checkpoint_dir=checkpoint_dir,
                            settings=spec["settings"])
    arrays = {}
    for i, result in enumerate(results):
        for j, run in enumerate(result.sal):
            for path, leaf in jax.tree_util.tree_flatten_with_path(run.variables)[0]:
                arrays[f"{i}/{j}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    arrays["meshes"] = np.asarray([(mesh.shape[members.ENSEMBLE], mesh.shape["data"]) for mesh in meshes])
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
