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
expect 2 "expected 'bench kernels'" bench models
expect 1 "error: .*bench kernels: unknown option '--bogus'" bench kernels --bogus
expect 1 "is not a valid regular expression" bench kernels --filter "("
expect 1 "matches none of the" bench kernels --filter no-such-kernel
expect 1 "--repeats 'many' \(expected a number" bench kernels --repeats many
expect 1 "device cuda:7 is not available" bench kernels --device cuda:7
expect 0 "^softmax/forward +segformer-b0" bench kernels --list --filter softmax

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

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
