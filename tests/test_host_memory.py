import os
import subprocess
import sys

import pytest

from sal_jax.host_memory import ENV_VARS, keep_freed_host_memory

# Allocates, touches and frees 64 MB five times (after one warm-up) and prints the page faults per cycle.
CHILD = """
import ctypes, resource, sys
from sal_jax.host_memory import keep_freed_host_memory
print(keep_freed_host_memory() if sys.argv[1] == "keep" else False)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def cycle(size=64 * 2**20):
    pointer = libc.malloc(size)
    ctypes.memset(pointer, 1, size)
    libc.free(pointer)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_cycle(mode: str, env: dict[str, str]) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    applied, kept = faults_per_cycle("keep", env)
    _, default = faults_per_cycle("default", env)
    assert applied == "True"
    assert default >= 1  # glibc maps 64 MB afresh on every malloc: its pages fault in each time
    assert kept == 0


def test_a_users_own_malloc_settings_are_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert keep_freed_host_memory() is False
