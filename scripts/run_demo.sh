#!/usr/bin/env bash
# `make demo`: start a local anvil, deploy Sonar with the brownie script, run `mine demo` on it.
# Extra arguments go to `mine demo` (e.g. scripts/run_demo.sh --dataset diabetes).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${DEMO_PORT:-8545}"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "error: port $PORT is in use; stop that process or run with DEMO_PORT=<free port>" >&2
  exit 3
fi
mkdir -p .run
anvil --host 127.0.0.1 --port "$PORT" --hardfork shanghai --block-base-fee-per-gas 0 --accounts 30 \
  --mnemonic "test test test test test test test test test test test junk" --silent &
ANVIL_PID=$!
trap 'kill "$ANVIL_PID" 2>/dev/null || true; wait "$ANVIL_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
# brownie's development network attaches to a node already on 8545; on another port `mine demo`
# deploys from the same build artifacts with web3
if [ "$PORT" = 8545 ]; then
  brownie run scripts/deploy.py --network development
fi
mine --rpc "http://127.0.0.1:$PORT" demo --out "${DEMO_OUT:-demo-out}" "$@"
