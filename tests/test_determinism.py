"""config.deterministic: what the switch sets, that it must come before the backend, and that on a CPU it
changes no bit."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from sal_jax.determinism import MATMUL_PRECISION, XLA_FLAG, apply_determinism, determinism_enabled
from sal_jax.errors import ConfigError

TESTS = Path(__file__).resolve().parent

TOO_LATE = """
import sys
sys.path[:0] = [sys.argv[1]]
import jax.numpy as jnp
from conftest import blobs  # the suite's task, without its switch (SAL_JAX_TEST_DETERMINISTIC=0)
from sal_jax.config import default_config
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.models import make_ladder
jnp.zeros(1)  # the backend starts here, without the deterministic flag
config = default_config()
config.deterministic = True
try:
    train_ladder(make_ladder(config.model, 3), blobs(), config)
except ConfigError as error:
    print(error)
"""


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, **values}


@pytest.mark.skipif(os.environ.get("SAL_JAX_TEST_DETERMINISTIC") == "0",
                    reason="the suite runs in the backend's default mode (SAL_JAX_TEST_DETERMINISTIC=0)")
def test_the_suite_runs_deterministic_and_the_switch_sets_flag_and_precision():
    assert determinism_enabled()  # tests/conftest.py, before the backend started
    assert XLA_FLAG in os.environ["XLA_FLAGS"].split()
    assert jax.config.jax_default_matmul_precision == MATMUL_PRECISION
    apply_determinism(True)  # again, after the backend started: already on, nothing to do


def test_the_setting_must_be_a_bool():
    with pytest.raises(ConfigError, match=r"^config.deterministic: must be True or False, got 'yes'$"):
        apply_determinism("yes")


def test_asking_for_it_after_the_backend_started_is_one_clear_error():
    proc = subprocess.run([sys.executable, "-c", TOO_LATE, str(TESTS)], capture_output=True, text=True,
                          timeout=120, env=environment(SAL_JAX_TEST_DETERMINISTIC="0"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [
        "config.deterministic: JAX's backend has already started, so XLA can no longer switch to deterministic "
        "kernels; call sal_jax.enable_determinism() before any JAX computation, or set "
        f"XLA_FLAGS={XLA_FLAG} before starting Python"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU promise: XLA:CPU is deterministic either way")
def test_on_a_cpu_the_switch_changes_no_bit(tmp_path):
    """The checkpoint tests' ladder (3 levels and a baseline, 48 steps) with and without the switch."""
    outs = {}
    for switch in ("0", "1"):
        outs[switch] = tmp_path / f"run_{switch}.npz"
        proc = subprocess.run([sys.executable, str(TESTS / "checkpoint_child.py"), str(tmp_path / f"ckpt_{switch}"),
                               str(outs[switch]), "none", "0"], capture_output=True, text=True, timeout=300,
                              env=environment(SAL_JAX_TEST_DETERMINISTIC=switch))
        assert proc.returncode == 0, proc.stderr[-2000:]
    without, with_switch = np.load(outs["0"]), np.load(outs["1"])
    assert len(without.files) == len(with_switch.files) > 0
    for name in without.files:
        np.testing.assert_array_equal(without[name], with_switch[name])
