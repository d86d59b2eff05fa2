#!/usr/bin/env bash
# The training loop's GPU measurements in one prepared run (DEVELOPERS.md, "On a GPU"): loop / jitted-step
# throughput, guided / plain step and JAX / PyTorch per family, the digits main job's wall time (cold and
# warm compilation cache), the dispatches per epoch, and the steps-per-call tests on the GPU. Run from the
# repo root with the ml_collections wheel in .whl/; results go to $OUT (default /tmp/gpu_loop_check), in
# few files (the device tool returns at most 8).
#
#     OUT=/tmp/out bash benchmarks/gpu_loop_check.sh                       # everything, ~9 minutes on an H100
#     OUT=/tmp/out STAGES="main mlp_main" bash benchmarks/gpu_loop_check.sh  # some stages
#     BEFORE=.gpu/before STAGES="main before" ...   # also the main job of another checkout (e.g. `git archive`
#                                                   # of an older commit), on the warm cache, for a before/after
# BUDGET (seconds, default 520): a stage starts only with time left, and its time limit shrinks to fit.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_loop_check}
STAGES=${STAGES:-"mlp cnn mlp_main main rnn mlp_tiny dispatch tests"}
BUDGET=${BUDGET:-520}
COMMAND_BUFFERS=${COMMAND_BUFFERS:-"--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL"}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$summary"
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$summary"

seconds() { date +%s.%N; }
limit() { local left=$((BUDGET - SECONDS)); echo $(( left < $1 ? left : $1 )); }  # a stage's limit, within the budget
main_job() {  # main_job <checkout> <label> <caches...>: the README's main job, e.g. on a cold then a warm cache
  local checkout=$1 label=$2; shift 2
  for cache in "$@"; do
    [ "$cache" = cold ] && rm -rf /tmp/xla_cache
    rm -rf /tmp/digits
    local start; start=$(seconds)
    (cd "$checkout" && timeout "$(limit 150)" python3 -m sal_jax.main --config=experiments/configs/digits_mlp.py \
      --noprogress --workdir=/tmp/digits --compilation_cache=/tmp/xla_cache) >>"$OUT/logs.txt" 2>&1
    echo "digits main job, $label, $cache cache: exit $?, wall $(python3 -c "print(f'{$(seconds) - $start:.1f}')") s" \
      | tee -a "$summary"
    cp /tmp/digits/results.json "$OUT/main_${label}_${cache}.json" 2>/dev/null  # each phase's train and compile time
  done
}
start=$(seconds); python3 -c "import jax; jax.devices()"
echo "python + jax import + GPU start: $(python3 -c "print(f'{$(seconds) - $start:.1f}')") s" | tee -a "$summary"
for stage in $STAGES; do
  if (( BUDGET - SECONDS < 30 )); then echo "stage $stage: skipped, out of budget" | tee -a "$summary"; continue; fi
  case $stage in
    main) main_job . after cold warm ;;
    main_cmdbuf) (export XLA_FLAGS="${XLA_FLAGS:-} $COMMAND_BUFFERS"; main_job . after_cmdbuf cold) ;;
    imports)  # start-up: tensorboardX imports PyTorch where it is installed; sal_jax.summaries keeps it out
      for module in tensorboardX sal_jax.summaries; do
        python3 -c "import sys, time; t = time.perf_counter(); import $module
print(f'import $module: {time.perf_counter() - t:.2f} s, torch imported: {\"torch\" in sys.modules}')" | tee -a "$summary"
      done ;;
    *_cmdbuf)  # a benchmark family with XLA's command buffers (CUDA graphs) taking while loops too
      family=${stage%_cmdbuf}
      echo "#### $family with XLA_FLAGS=$COMMAND_BUFFERS" >>"$OUT/bench.md"
      XLA_FLAGS="${XLA_FLAGS:-} $COMMAND_BUFFERS" timeout "$(limit 150)" python3 benchmarks/bench_sal.py \
        --families="$family" --repeats=3 >>"$OUT/bench.md" 2>>"$OUT/logs.txt"
      echo "bench $stage: exit $?" | tee -a "$summary" ;;
    before) main_job "${BEFORE:?BEFORE: the other checkout}" before warm ;;
    profile)  # the main job on the warm cache under cProfile: where its host time goes
      timeout "$(limit 150)" python3 -m cProfile -o /tmp/main.prof -m sal_jax.main --config=experiments/configs/digits_mlp.py \
        --noprogress --workdir=/tmp/digits_profile --compilation_cache=/tmp/xla_cache >>"$OUT/logs.txt" 2>&1
      python3 -c "import pstats; pstats.Stats('/tmp/main.prof').sort_stats('cumulative').print_stats(60)" >"$OUT/profile.txt" ;;
    dispatch) timeout "$(limit 60)" python3 benchmarks/dispatch_count.py 2>>"$OUT/logs.txt" | tee -a "$summary" ;;
    tests) timeout "$(limit 150)" python3 -m pytest -q -p no:cacheprovider tests/test_chunks.py ${TESTS_K:+-k "$TESTS_K"} 2>&1 \
      | tail -3 | tee -a "$summary" ;;
    *)  # a family of benchmarks/common.py, in its own process and time limit
      timeout "$(limit 150)" python3 benchmarks/bench_sal.py --families="$stage" --repeats=3 --torch >>"$OUT/bench.md" 2>>"$OUT/logs.txt"
      echo "bench $stage: exit $?" | tee -a "$summary" ;;
  esac
done
cat "$OUT/bench.md" 2>/dev/null
