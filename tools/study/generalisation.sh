#!/usr/bin/env bash
# The README's generalisation study: U-Net and Siamese U-Net trained with the same budget on the
# synthetic "studio" domain, evaluated on held-out studio scenes (val) and on the same test scenes in
# the five unseen domains, for several seeds. Prints a table of mIoU mean and standard deviation.
#
# usage: tools/study/generalisation.sh [SEGENGINE] [OUT_DIR] [SEEDS...]
#   defaults: build/segengine, runs/study, seeds 0 1 2. Environment: SET="--set a=b ..." adds config
#   overrides, MODELS="siamese_unet" picks the configs (default: unet siamese_unet).
set -euo pipefail
bin="${1:-build/segengine}"
out="${2:-runs/study}"
shift $(( $# > 2 ? 2 : $# ))
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
read -r -a models <<< "${MODELS:-unet siamese_unet}"
domains=(textured night fog neon clutter)
results="$out/results.tsv"
mkdir -p "$out"
: > "$results"

miou() { sed -n 's/^  "mIoU": \(.*\),$/\1/p' "$1"; }

for seed in "${seeds[@]}"; do
  for model in "${models[@]}"; do
    run="$out/${model}_seed$seed"
    if [ ! -f "$run/best.safetensors" ]; then
      # shellcheck disable=SC2086
      "$bin" train "configs/$model.json" --set train.seed="$seed" ${SET:-} --out "$run" --no-progress
    fi
    "$bin" eval "configs/$model.json" --checkpoint "$run/best.safetensors" --split val --out "$run/eval_val" \
      --no-progress > /dev/null
    printf '%s\t%s\tstudio (val)\t%s\n' "$model" "$seed" "$(miou "$run/eval_val/metrics.json")" >> "$results"
    for domain in "${domains[@]}"; do
      "$bin" eval "configs/$model.json" --checkpoint "$run/best.safetensors" --split test \
        --set data.test.dataset.domain="$domain" --out "$run/eval_$domain" --no-progress > /dev/null
      printf '%s\t%s\t%s\t%s\n' "$model" "$seed" "$domain" "$(miou "$run/eval_$domain/metrics.json")" >> "$results"
    done
  done
done

# mean and sample standard deviation (in mIoU points) per model and domain, and over the unseen domains
awk -F'\t' '
  { key = $1 "\t" $3; n[key]++; s[key] += 100 * $4; q[key] += (100 * $4) ^ 2; models[$1] = 1; doms[$3] = 1
    if ($3 != "studio (val)") { u = $1 "\t" $2; unseen[u] += 100 * $4; cnt[u]++ } }
  END {
    printf "%-14s %-14s %8s %8s %3s\n", "model", "domain", "mIoU", "std", "n"
    for (m in models) for (d in doms) { k = m "\t" d; if (!(k in n)) continue
      mean = s[k] / n[k]; var = n[k] > 1 ? (q[k] - n[k] * mean ^ 2) / (n[k] - 1) : 0
      printf "%-14s %-14s %8.2f %8.2f %3d\n", m, d, mean, sqrt(var > 0 ? var : 0), n[k] }
    for (m in models) { t = 0; tq = 0; c = 0
      for (u in unseen) { split(u, p, "\t"); if (p[1] != m) continue; v = unseen[u] / cnt[u]; t += v; tq += v ^ 2; c++ }
      mean = t / c; var = c > 1 ? (tq - c * mean ^ 2) / (c - 1) : 0
      printf "%-14s %-14s %8.2f %8.2f %3d\n", m, "unseen (mean)", mean, sqrt(var > 0 ? var : 0), c }
  }' "$results" | sort -k1,1 -s
