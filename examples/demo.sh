#!/usr/bin/env bash
# The whole flow on the built-in default, as `make demo` runs it: train a short Fashion-MNIST run,
# export the generator to ONNX (with its parity check), score it, serve it over gRPC, generate a
# grid of images through the server, and stop the server. Needs `gan` on PATH (make demo sees to it).
#   RUN=runs/demo EPOCHS=2 bash examples/demo.sh
set -euo pipefail
RUN=${RUN:-runs/demo}
EPOCHS=${EPOCHS:-2}

step() { printf '\n$ %s\n' "$*"; "$@"; }

rm -rf "$RUN"  # the demo's own folder: each demo starts fresh
step gan train --out "$RUN" --epochs "$EPOCHS"
step gan export "$RUN" --out "$RUN/generator.onnx"
step gan eval "$RUN/generator.onnx" -n 2000  # FID/KID/precision/recall (trains the classifier once)

printf '\n$ gan serve %s --port 0 &\n' "$RUN/generator.onnx"
gan serve "$RUN/generator.onnx" --port 0 >"$RUN/serve.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 600); do  # the server prints "serving <model> on HOST:PORT" once it is ready
  grep -q '^serving' "$RUN/serve.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$RUN/serve.log"; exit 1; }
  sleep 0.1
done
addr=$(awk '/^serving/ {print $4}' "$RUN/serve.log")
[ -n "$addr" ] || { echo "gan serve did not become ready:"; cat "$RUN/serve.log"; exit 1; }
step gan generate --server "$addr" -n 64 --seed 1 --out "$RUN/grid.png"

kill -TERM "$pid" && wait "$pid" && trap - EXIT
printf '\ndone: samples in %s/samples/, the model %s/generator.onnx, a grid from the server %s/grid.png\n' \
  "$RUN" "$RUN" "$RUN"
