#!/usr/bin/env bash
# The exact commands behind the committed results/: one sweep per experiment, a re-train of
# each best trial, then the comparison table. Run from the repository root after
# `make setup`, with the datasets in $HPSEARCH_DATA_DIR (../shared/datasets on our machines).
# Pass experiment names to run only those, e.g. `scripts/reproduce_results.sh mnist_cnn`.
# An experiment whose folder exists is resumed (a sweep cut short by the end of a work
# session goes on from where it stopped); remove the folder to start it again.
set -euo pipefail

HPSEARCH=${HPSEARCH:-.venv/bin/hpsearch}
export HPSEARCH_DATA_DIR=${HPSEARCH_DATA_DIR:-$(cd .. && pwd)/shared/datasets}

# experiment -> extra re-train options. Every best trial is re-trained with 5 seeds, from its
# own seed on, for the epoch count at which it peaked in the sweep (its config); the test
# figures are then mean ± std. The MNIST-family re-trains also fit the validation split;
# pneumonia_cnn's does not: its decision threshold is chosen on the validation split.
declare -A RETRAIN=(
  [mnist_mlp]="--seeds 5 --train-on train+val"
  [mnist_hog_mlp]="--seeds 5 --train-on train+val"
  [mnist_cnn]="--seeds 5 --train-on train+val"
  [fashion_cnn]="--seeds 5 --train-on train+val"
  [pneumonia_cnn]="--seeds 5"
  [mnist_mlp_pareto]=""
)
ORDER=(pneumonia_cnn mnist_hog_mlp mnist_mlp mnist_mlp_pareto mnist_cnn fashion_cnn)

for name in "${@:-${ORDER[@]}}"; do
  if [[ -f results/$name/sweep.json ]]; then
    "$HPSEARCH" sweep "search_spaces/$name.yaml" --resume
  else
    "$HPSEARCH" sweep "search_spaces/$name.yaml"
  fi
  "$HPSEARCH" report "results/$name"
  # shellcheck disable=SC2086  # the options are words on purpose
  "$HPSEARCH" retrain "results/$name" ${RETRAIN[$name]}
done
"$HPSEARCH" compare results/
