"""A tiny ladder's FLOP counts and compute-matched step count, for tests/test_compute_budget.py, which runs
this file with XLA_FLAGS=--xla_force_host_platform_device_count=8 (8 simulated devices: the batch split
over them) and compares its one JSON line with the same counts on one device."""
import json
import sys
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import conftest  # noqa: E402  (the tests' compilation cache and determinism)
import jax  # noqa: E402

from sal_jax.config import default_config  # noqa: E402
from sal_jax.ladder import train_ladder  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402


def ladder_config() -> Any:
    """The tests' 3-level MLP ladder (conftest's `config`), 2 epochs, with the compute-matched baseline alone."""
    c = default_config()
    c.model.levels, c.model.width = (1, 2, 3), 16
    c.train.epochs, c.train.batch_size, c.train.learning_rate = 2, 32, 3e-2
    c.baselines.epoch_matched = c.baselines.time_matched = False
    return c


def ladder_counts() -> dict[str, Any]:
    """What the compute-matched baseline's length depends on, and that length, for `ladder_config`."""
    data = conftest.blobs()
    result = train_ladder(make_ladder(ladder_config().model, data.num_classes), data, ladder_config())
    plain = result.plain_compute_matched
    return {"devices": jax.device_count(), "sal_step_flops": [run.step_flops for run in result.sal],
            "sal_flops": result.sal_flops, "plain_step_flops": plain.step_flops, "steps": plain.steps,
            "step_budget": plain.step_budget, "flop_budget": plain.flop_budget}


if __name__ == "__main__":
    print(json.dumps(ladder_counts()))
