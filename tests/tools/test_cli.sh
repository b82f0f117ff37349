#!/usr/bin/env bash
# Runs the real segengine binary: exit codes, messages, and that outputs are written atomically.
# usage: test_cli.sh path/to/segengine
set -u
bin="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect <expected exit code> <regex the output must match> <args...>
expect() {
  local code="$1" pattern="$2"
  shift 2
  local out rc
  out="$("$bin" "$@" 2>&1)"
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL: segengine $* -> exit $rc (expected $code), output:"
    echo "$out" | head -20
    echo "expected to match: $pattern"
    failures=$((failures + 1))
  else
    echo "ok: segengine $*"
  fi
}

expect 0 "^segengine [0-9]+\.[0-9]+\.[0-9]+" --version
expect 0 "cuda build: (real|emulated|off)" --version
expect 0 "devices: cpu" --version
expect 0 "^cpu: [0-9]+ hardware threads" devices
expect 2 "unknown command 'frobnicate'" frobnicate
expect 2 "usage: segengine" 
expect 0 "usage: segengine" --help
expect 0 "usage: segengine" train --help
expect 0 "usage: segengine" bench kernels -h
expect 2 "expected 'bench kernels' or 'bench model'" bench models
expect 1 "error: .*bench kernels: unknown option '--bogus'" bench kernels --bogus
expect 1 "is not a valid regular expression" bench kernels --filter "("
expect 1 "matches none of the" bench kernels --filter no-such-kernel
expect 1 "--repeats 'many' \(expected a number" bench kernels --repeats many
expect 1 "device cuda:7 is not available" bench kernels --device cuda:7
expect 0 "^softmax/forward +segformer-b0" bench kernels --list --filter softmax

# Every kernel family and direction has cases: one listing, searched for each name.
"$bin" bench kernels --list >"$tmp/cases.txt" 2>&1
missing=0
for name in attention/forward attention/forward_reference attention/backward attention/backward_reference \
  softmax/backward batch_norm/forward batch_norm/forward_eval batch_norm/backward layer_norm/forward \
  layer_norm/backward group_norm/forward group_norm/backward max_pool2d/forward max_pool2d/backward \
  avg_pool2d/forward avg_pool2d/backward adaptive_avg_pool2d/forward adaptive_avg_pool2d/backward \
  resize/bilinear_forward resize/bilinear_backward resize/nearest_forward resize/nearest_backward \
  dropout/forward dropout/backward cross_entropy/forward cross_entropy/backward metrics/argmax_confusion \
  metrics/confusion optim/sgd_momentum optim/adamw optim/sum_of_squares optim/unscale_and_check; do
  if ! grep -q "^$name " "$tmp/cases.txt"; then
    echo "FAIL: bench kernels --list has no $name case"
    missing=$((missing + 1))
  fi
done
[ "$missing" -eq 0 ] && echo "ok: bench kernels --list names every family"
failures=$((failures + missing))
expect 0 "^adaptive_avg_pool2d/forward +pspnet +2048x64x64 -> 2048x6x6" bench kernels --list --filter adaptive
# The filter also searches the shape text.
expect 0 "^resize/bilinear_forward +segformer-b0 +150x128x128 -> 150x512x512, ADE20K" bench kernels --list \
  --filter "bilinear_forward.*ADE20K"
# Two quick real runs: BatchNorm's training and eval forward, and AdamW over SegFormer-B0's parameters.
expect 0 "^batch_norm/forward_eval +resnet50-os8" bench kernels --device cpu --filter "batch_norm/forward.* resnet50" \
  --repeats 1 --warmup 0
expect 0 "^optim/adamw +segformer-b0 +3\.72 M parameters in 205 tensors" bench kernels --device cpu \
  --filter "optim/adamw segformer" --repeats 1 --warmup 0

# The vendor (cuDNN/cuBLAS) columns: never on the CPU; on the emulator's device the comparison is not built
# (the real build only); on a GPU, a build with the vendor references checks each case against the vendor's
# output and times it beside ours.
expect 0 "% peak$" bench kernels --device cpu --filter reduce/sum_rows --repeats 1 --warmup 0
version="$("$bin" --version)"
if grep -q "cuda build: emulated" <<<"$version"; then
  expect 0 "vendor comparison: not built" bench kernels --device cuda --filter "^softmax/forward" --repeats 1 --warmup 0
elif grep -q "cuda:0" <<<"$version"; then
  expect 0 "^vendor check: 2 cases compared|vendor comparison: not built" bench kernels --device cuda \
    --filter "^softmax/forward|^gemm/nn square" --repeats 1 --warmup 0
fi

# A real run writes its JSON report through a temporary file.
expect 0 "reduce/sum_rows" bench kernels --device cpu --filter reduce/sum_rows --repeats 1 --warmup 0 \
  --json "$tmp/report.json"
if ! grep -q '"kernel": "reduce/sum_rows"' "$tmp/report.json" || ! grep -q '"median_ms"' "$tmp/report.json" \
  || [ -e "$tmp/report.json.tmp" ]; then
  echo "FAIL: JSON report missing or incomplete"
  failures=$((failures + 1))
fi
# An existing report is not destroyed by a run that cannot write.
expect 1 "cannot write" bench kernels --device cpu --filter reduce/sum_rows --repeats 1 --warmup 0 \
  --json "$tmp/no-such-dir/report.json"
grep -q '"kernel": "reduce/sum_rows"' "$tmp/report.json" || { echo "FAIL: earlier report lost"; failures=$((failures + 1)); }

# info: a model object, or a training config's "model" object (other keys are the trainer's business).
cat >"$tmp/unet.json" <<'JSON'
{"name": "unet", "num_classes": 2, "base_channels": 4, "depth": 2}
JSON
cat >"$tmp/train.json" <<'JSON'
{"model": {"name": "siamese_unet", "num_classes": 3, "base_channels": 4, "depth": 2,
           "consistency": {"weight": 0.2}}, "trainer": {"epochs": 1}}
JSON
# MACs per pixel and level: 64x48: 3x3 convs (3*4 + 4*4 + 8*4 + 4*4) * 9 and the classifier 4*2; 32x24:
# (4*8 + 8*8 + 16*8 + 8*8) * 9; 16x12: (8*16 + 16*16) * 9; the 2x2 transposed convs 16*12*16*8*4 and
# 32*24*8*4*4: 3072*692 + 768*2592 + 192*3456 + 196608 = 4,976,640.
expect 0 "MACs: 4\.98 M \(9\.95 MFLOP\); Conv2d 4\.78 M, ConvTranspose2d 196\.61 K" info --config "$tmp/unet.json" --input 64x48
expect 0 "parameters: 7,554 " info --config "$tmp/unet.json" --input 64x48
expect 0 "\(outc\): OutConv" info --config "$tmp/unet.json" --input 32x32
expect 0 "input: \(2, 3, 32, 32\) -> logits \(2, 2, 32, 32\)" info --config "$tmp/unet.json" --input 32x32 --batch 2
expect 0 "activation memory: [0-9.]+ MiB" info --config "$tmp/train.json" --input 32x32 --no-tree
expect 0 "model: siamese_unet \(SiameseUNet\), 3 classes" info --config "$tmp/train.json" --input 32x32 --no-tree
echo '{"name": "unett", "num_classes": 2}' >"$tmp/typo.json"
expect 1 "unknown name 'unett' \(did you mean 'unet'\?\)" info --config "$tmp/typo.json"
echo '{"name": "unet", "num_classes": 2, "base_channels": 4, "dept": 2}' >"$tmp/key.json"
expect 1 "unknown key 'dept'.*did you mean 'depth'" info --config "$tmp/key.json" --input 32x32
echo '{"trainer": {}}' >"$tmp/nomodel.json"
expect 1 "has neither a \"model\" object nor a model \"name\"" info --config "$tmp/nomodel.json"
expect 1 "info: --config FILE is required" info
expect 1 "info: --input '64' \(expected HxW" info --config "$tmp/unet.json" --input 64
expect 1 "info: unknown option '--bogus'" info --config "$tmp/unet.json" --bogus
expect 1 "no-such\.json" info --config "$tmp/no-such.json"

# train / eval / predict end to end: a tiny U-Net on tiny synthetic scenes, built on the shipped config.
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cat >"$tmp/tiny.json" <<JSON
{"base": "$repo/configs/unet.json",
 "model": {"base_channels": 4, "depth": 2},
 "data": {"dataset": {"image_size": 32}, "train": {"dataset": {"size": 16}, "loader": {"batch_size": 4}},
          "val": {"dataset": {"size": 8}}, "test": {"dataset": {"size": 8}}},
 "scheduler": {"warmup_iters": 1},
 "train": {"max_iters": 4, "eval_interval": 2, "checkpoint_interval": 2, "keep_checkpoints": 2, "log_interval": 1}}
JSON
expect 0 "best val mIoU [0-9.]+% at iteration [24]" train "$tmp/tiny.json" --out "$tmp/run" --no-progress
for f in best.safetensors last.safetensors metrics.jsonl config.json checkpoints/iter_000004.safetensors plots/loss.png; do
  [ -s "$tmp/run/$f" ] || { echo "FAIL: train did not write $f"; failures=$((failures + 1)); }
done
expect 1 "already holds a run.*--resume" train "$tmp/tiny.json" --out "$tmp/run" --no-progress
expect 0 "resumed from .* at iteration 2" train "$tmp/tiny.json" --out "$tmp/run" --no-progress \
  --resume "$tmp/run/checkpoints/iter_000002.safetensors"
expect 1 "schedule .* over 4, this one .* over 6" train "$tmp/tiny.json" --out "$tmp/run" --no-progress \
  --resume "$tmp/run/last.safetensors" --set train.max_iters=6
expect 0 "\| background +\| +[0-9.]+ \|" eval "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" --no-progress
for f in metrics.json confusion.csv confusion.png; do
  [ -s "$tmp/run/eval_val/$f" ] || { echo "FAIL: eval did not write $f"; failures=$((failures + 1)); }
done
expect 0 "split 'test' .*slide mode \+ TTA" eval "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" \
  --split test --mode slide --tta --set inference.crop_size=24 --set inference.stride=16 --no-progress --out "$tmp/ev"
expect 0 "loss_mask\.png" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/run/plots/loss.png" \
  --out "$tmp/pred"
[ -s "$tmp/pred/loss_mask.png" ] && [ -s "$tmp/pred/loss_overlay.png" ] || { echo "FAIL: predict outputs"; failures=$((failures + 1)); }
# Batched prediction (images of one size inferred together, sizes mixed) writes what one-at-a-time does.
mkdir -p "$tmp/inputs"
cp "$tmp/run/plots/loss.png" "$tmp/inputs/a.png"; cp "$tmp/run/plots/miou.png" "$tmp/inputs/b.png"
cp "$tmp/run/eval_val/confusion.png" "$tmp/inputs/c.png"; cp "$tmp/run/plots/loss.png" "$tmp/inputs/d.png"
cp "$tmp/run/plots/miou.png" "$tmp/inputs/e.png"
expect 0 "e_mask\.png" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/inputs" \
  --out "$tmp/pred1" --set inference.batch_size=1
expect 0 "e_mask\.png" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/inputs" \
  --out "$tmp/pred4" --set inference.batch_size=4
for name in a b c d e; do
  cmp -s "$tmp/pred1/${name}_mask.png" "$tmp/pred4/${name}_mask.png" ||
    { echo "FAIL: batched predict differs for $name"; failures=$((failures + 1)); }
done
expect 0 "a_mask\.png" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/inputs/a.png" \
  --out "$tmp/pred_amp" --set inference.amp=bf16

# Bad inputs: one clear line, a non-zero exit, and what was written before survives.
echo '{"model": {"name": "unet",}' >"$tmp/malformed.json"
expect 1 "malformed\.json:1:27: malformed JSON" train "$tmp/malformed.json" --out "$tmp/bad" --no-progress
expect 1 "unknown key 'train\.eval_intervall'.*did you mean 'train\.eval_interval'" train "$tmp/tiny.json" --out "$tmp/bad" \
  --set train.eval_intervall=3 --no-progress
expect 1 "no-such\.json" train "$tmp/no-such.json"
expect 1 "no-such\.safetensors" eval "$tmp/tiny.json" --checkpoint "$tmp/no-such.safetensors"
expect 1 "train: unknown option '--bogus'" train "$tmp/tiny.json" --bogus
printf 'not a jpeg at all' >"$tmp/corrupt.jpg"
expect 1 "corrupt\.jpg" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/corrupt.jpg" --out "$tmp/pred"
# A bad image in the middle: the ones before it still get their outputs.
expect 1 "corrupt\.jpg" predict "$tmp/tiny.json" --checkpoint "$tmp/run/best.safetensors" "$tmp/inputs/a.png" \
  "$tmp/inputs/b.png" "$tmp/corrupt.jpg" --out "$tmp/pred_bad" --set inference.batch_size=4
[ -s "$tmp/pred_bad/a_mask.png" ] && [ -s "$tmp/pred_bad/b_mask.png" ] ||
  { echo "FAIL: predict lost the outputs before a corrupt image"; failures=$((failures + 1)); }
expect 1 "the loss is (nan|inf|-nan)" train "$tmp/tiny.json" --out "$tmp/diverge" --no-progress \
  --set optimizer.lr=1e30 --set optimizer.type=sgd --set model.batch_norm=false --set train.max_iters=20
[ -s "$tmp/run/best.safetensors" ] || { echo "FAIL: best checkpoint lost"; failures=$((failures + 1)); }

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
