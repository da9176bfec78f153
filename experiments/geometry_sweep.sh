#!/usr/bin/env bash
# The latent-geometry sweep of docs/geometry.md: depth-2 and depth-1 models in the 3x3 maze, with and
# without the temporal-distance term, trained in parallel, then scored by experiments/geometry_table.py.
#   bash experiments/geometry_sweep.sh OUT_DIR [STEPS]      (env: SET=1|2, DEVICE=cpu|cuda, CPUS="2-15" for taskset)
# SET=1: defaults vs the term at level 1 / both levels / depth 1 (weight, discount); SET=2: weight, expectile,
# discount, goal mix and clip length around the best of SET=1.
set -u
OUT=${1:?output dir}; STEPS=${2:-3000}; DEVICE=${DEVICE:-cpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
BASE=(data=rooms data.grid=[3,3] data.layout=maze data.layout_seed=0 data.episode_len=128 data.clip_len=64
      data.num_train_episodes=512 tracking.enabled=false train.progress=false train.device=$DEVICE train.threads=1
      train.steps=$STEPS train.eval_every=$((STEPS / 2)) train.log_every=100 train.checkpoint_every=$((STEPS / 3))
      train.keep_checkpoints=3)
declare -A RUNS
if [ "${SET:-1}" = 1 ]; then RUNS=(
  [d2_base]="model.depth=2"
  [d2_geo1]="model.depth=2 model.geometry_weight=[0.0,1.0]"
  [d2_geo1_w03]="model.depth=2 model.geometry_weight=[0.0,0.3]"
  [d2_geo1_g99]="model.depth=2 model.geometry_weight=[0.0,1.0] model.geometry_discount=0.99"
  [d2_geo01_g99]="model.depth=2 model.geometry_weight=[1.0,1.0] model.geometry_discount=0.99"
  [d1_base]="model.depth=1"
  [d1_geo_g95]="model.depth=1 model.geometry_weight=[1.0]"
  [d1_geo_g99]="model.depth=1 model.geometry_weight=[1.0] model.geometry_discount=0.99"
); else RUNS=(
  [d2_w3]="model.depth=2 model.geometry_weight=[0.0,3.0]"
  [d2_w10]="model.depth=2 model.geometry_weight=[0.0,10.0]"
  [d2_w3_t95]="model.depth=2 model.geometry_weight=[0.0,3.0] model.geometry_expectile=0.95"
  [d2_w3_g90]="model.depth=2 model.geometry_weight=[0.0,3.0] model.geometry_discount=0.9"
  [d2_w3_rg05]="model.depth=2 model.geometry_weight=[0.0,3.0] model.geometry_random_goal=0.5"
  [d2_w3_clip128]="model.depth=2 model.geometry_weight=[0.0,3.0] data.clip_len=128"
  [d2_w13]="model.depth=2 model.geometry_weight=[1.0,3.0]"
  [d2_w3_t95_rg05]="model.depth=2 model.geometry_weight=[0.0,3.0] model.geometry_expectile=0.95 model.geometry_random_goal=0.5"
  [d1_w3]="model.depth=1 model.geometry_weight=[3.0]"
  [d1_w10]="model.depth=1 model.geometry_weight=[10.0]"
  [d1_w3_t95_rg05]="model.depth=1 model.geometry_weight=[3.0] model.geometry_expectile=0.95 model.geometry_random_goal=0.5"
  [d1_w3_clip128]="model.depth=1 model.geometry_weight=[3.0] data.clip_len=128"
); fi
$PY -c "import hjepa; hjepa.build_data(hjepa.compose(['${BASE[0]}','${BASE[1]}','${BASE[2]}','${BASE[3]}','${BASE[4]}','${BASE[5]}','${BASE[6]}']))"
pids=()
for name in "${!RUNS[@]}"; do
  ${CPUS:+taskset -c $CPUS} $PY -m hjepa.train "${BASE[@]}" ${RUNS[$name]} hydra.run.dir="$OUT/$name" \
    > "$OUT/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
