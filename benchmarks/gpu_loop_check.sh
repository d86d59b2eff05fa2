#!/usr/bin/env bash
# The training loop's GPU measurements in one prepared run (DEVELOPERS.md, "On a GPU"): loop / jitted-step
# throughput, guided / plain step and JAX / PyTorch per family, the digits main job's wall time (cold and
# warm compilation cache), the dispatches per epoch, and the steps-per-call tests on the GPU. Run from the
# repo root with the ml_collections wheel in .whl/; results go to $OUT (default /tmp/gpu_loop_check), in
# few files (the device tool returns at most 8).
#
#     OUT=/tmp/out bash benchmarks/gpu_loop_check.sh                       # everything, ~9 minutes on an H100
#     OUT=/tmp/out STAGES="main mlp_main" bash benchmarks/gpu_loop_check.sh  # some stages
set -uo pipefail
OUT=${OUT:-/tmp/gpu_loop_check}
STAGES=${STAGES:-"mlp cnn mlp_main main rnn mlp_tiny dispatch tests"}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$summary"
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$summary"

seconds() { date +%s.%N; }
main_job() {  # the README's main job, twice: a cold compilation cache, then the warm one
  rm -rf /tmp/xla_cache
  for cache in cold warm; do
    rm -rf /tmp/digits
    local start; start=$(seconds)
    timeout 180 python3 -m sal_jax.main --config=experiments/configs/digits_mlp.py --noprogress --workdir=/tmp/digits \
      --compilation_cache=/tmp/xla_cache >>"$OUT/logs.txt" 2>&1
    echo "digits main job, $cache cache: exit $?, wall $(python3 -c "print(f'{$(seconds) - $start:.1f}')") s" | tee -a "$summary"
  done
}
for stage in $STAGES; do
  case $stage in
    main) main_job ;;
    dispatch) timeout 60 python3 benchmarks/dispatch_count.py 2>>"$OUT/logs.txt" | tee -a "$summary" ;;
    tests) timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_chunks.py 2>&1 | tail -3 | tee -a "$summary" ;;
    *)  # a family of benchmarks/common.py, in its own process and time limit
      timeout 150 python3 benchmarks/bench_sal.py --families="$stage" --repeats=3 --torch >>"$OUT/bench.md" 2>>"$OUT/logs.txt"
      echo "bench $stage: exit $?" | tee -a "$summary" ;;
  esac
done
cat "$OUT/bench.md" 2>/dev/null
