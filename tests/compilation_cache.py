"""One persistent XLA compilation cache per test process tree, in a temporary folder made for this run.

Many tests train the same tiny ladders, so they compile the same programs: with JAX's persistent cache a
program is compiled once per run of the suite and loaded after that (measured on tests/test_ladder.py
alone: 132 s -> 76 s). A loaded program is the compiled one, byte for byte, so no result changes. Each
pytest-xdist worker has its own folder, and the subprocesses a test starts inherit their worker's
(`JAX_COMPILATION_CACHE_DIR`), so that no process reads an entry another test's process is writing: JAX
writes entries without a lock, and reading a half-written one costs a warning (on the stderr that some
tests read) and a compilation. The processes of one multi-process run share it: only process 0 writes
(JAX's rule), and a warning in their stderr breaks no test. The folder goes when the run ends: every run
of the suite starts cold.

Imported by conftest.py before JAX: JAX reads these variables when it is imported. A
JAX_COMPILATION_CACHE_DIR already set by the user is left alone; SAL_JAX_TEST_COMPILATION_CACHE=0 turns
this off.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

ROOT = "SAL_JAX_TEST_COMPILATION_CACHE_ROOT"  # set by the process that made the folder; its children inherit it
CACHE = "JAX_COMPILATION_CACHE_DIR"


def use_compilation_cache() -> None:
    if os.environ.get("SAL_JAX_TEST_COMPILATION_CACHE", "1") == "0":
        return
    root = os.environ.get(ROOT)
    if root is None:
        if CACHE in os.environ:  # the user's own cache
            return
        root = os.environ[ROOT] = tempfile.mkdtemp(prefix="sal_jax_test_xla_")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None or CACHE not in os.environ:  # a worker's own folder; a test's child keeps its parent's
        os.environ[CACHE] = os.path.join(root, worker or "main")
    # every program, however fast it compiles (JAX's defaults skip those under 1 s: most of ours)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

