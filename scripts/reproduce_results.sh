#!/usr/bin/env bash
# The exact commands behind the committed results/: one sweep per experiment, a re-train of
# each best trial, then the comparison table. Run from the repository root after
# `make setup`, with the datasets in $HPSEARCH_DATA_DIR (../shared/datasets on our machines).
# Pass experiment names to run only those, e.g. `scripts/reproduce_results.sh mnist_cnn`.
set -euo pipefail

HPSEARCH=${HPSEARCH:-.venv/bin/hpsearch}
export HPSEARCH_DATA_DIR=${HPSEARCH_DATA_DIR:-$(cd .. && pwd)/shared/datasets}

# experiment -> extra re-train options. The re-train also fits the validation split (not for
# pneumonia_cnn), for the epoch count at which the sweep's best trial peaked (its config, its
# seed); with --seeds K, K times from that seed on, the test figures then as mean ± std.
declare -A RETRAIN=(
  [mnist_mlp]="--train-on train+val"
  [mnist_hog_mlp]="--train-on train+val"
  [mnist_cnn]="--train-on train+val"
  [fashion_cnn]="--train-on train+val"
  [pneumonia_cnn]="--seeds 3"
  [mnist_mlp_pareto]=""
)
ORDER=(mnist_mlp mnist_hog_mlp pneumonia_cnn fashion_cnn mnist_cnn mnist_mlp_pareto)

for name in "${@:-${ORDER[@]}}"; do
  if [[ -f results/$name/sweep.json ]]; then
    "$HPSEARCH" sweep "search_spaces/$name.yaml" --resume
  else
    "$HPSEARCH" sweep "search_spaces/$name.yaml"
  fi
  # shellcheck disable=SC2086  # the options are words on purpose
  "$HPSEARCH" retrain "results/$name" ${RETRAIN[$name]}
done
"$HPSEARCH" compare results/
