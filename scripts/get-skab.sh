#!/usr/bin/env sh
# Downloads the four SKAB files the demo and the tests use into ./data/skab
# (Skoltech Anomaly Benchmark, waico/SKAB on GitHub, GPL-3.0: data, not part
# of relais). The demo's pump replays data/skab/valve1_0.csv.
set -eu
dir="${1:-data/skab}"
base="https://raw.githubusercontent.com/waico/SKAB/master/data"
mkdir -p "$dir"
for pair in "anomaly-free/anomaly-free.csv anomaly-free_anomaly-free.csv" "valve1/0.csv valve1_0.csv" "valve1/1.csv valve1_1.csv" "other/9.csv other_9.csv"; do
  src="${pair% *}"; dst="${pair#* }"
  echo "fetching $src -> $dir/$dst"
  curl -fsSL "$base/$src" -o "$dir/$dst"
done
echo "done: relais demo now replays $dir/valve1_0.csv"
