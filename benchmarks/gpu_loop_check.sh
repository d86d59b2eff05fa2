#!/usr/bin/env bash
# The training loop's GPU measurements in one prepared run (DEVELOPERS.md, "On a GPU"): loop / jitted-step
# throughput, guided / plain step and JAX / PyTorch per family, the digits main job's wall time, the
# dispatches per epoch, and the steps-per-call tests on the GPU. Run from the repo root with the
# ml_collections wheel in .whl/; everything is written to $OUT (default /tmp/gpu_loop_check).
#
#     OUT=/tmp/out bash benchmarks/gpu_loop_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_loop_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$OUT/device.txt"

seconds() { date +%s.%N; }
bench() {  # one family per process, each with its own time limit, so one slow family cannot starve the rest
  timeout "$2" python3 benchmarks/bench_sal.py --families="$1" --repeats=3 --torch >"$OUT/bench_$1.md" 2>"$OUT/bench_$1.err"
  echo "bench $1: exit $?" | tee -a "$OUT/summary.txt"
}
[ -f .gpu/loop_variants.py ] && timeout 90 python3 .gpu/loop_variants.py mlp cnn mlp_main 2>&1 | grep "ms'" | tee "$OUT/loop_variants.txt"
bench mlp 120
bench cnn 120
bench mlp_main 90
start=$(seconds)
timeout 180 python3 -m sal_jax.main --config=experiments/configs/digits_mlp.py --noprogress --workdir=/tmp/digits \
  >"$OUT/main_job.log" 2>&1
echo "digits main job: exit $?, wall $(python3 -c "print(f'{$(seconds) - $start:.1f}')") s" | tee -a "$OUT/summary.txt"
bench rnn 150
bench mlp_tiny 60
timeout 60 python3 benchmarks/dispatch_count.py >"$OUT/dispatch.txt" 2>&1
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_chunks.py 2>&1 | tail -3 | tee -a "$OUT/summary.txt"
for f in "$OUT"/bench_*.md; do echo "== $f"; cat "$f"; done
cat "$OUT/dispatch.txt"
