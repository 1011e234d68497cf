#!/usr/bin/env bash
# Bring up the whole system on a local anvil chain and run its main job (see README: "What the demo shows").
# Called by `make demo` after `make install`. Environment: OPG_DEMO_PORT (anvil, default 8545),
# OPG_DEMO_RELAYER_PORT (default 8402), OPG_DEMO_DIR (logs and relayer store; default var/demo),
# OPG_DEPLOYMENTS_DIR (where the deployment file goes; default deployments/, where `ape console` finds it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"

PORT="${OPG_DEMO_PORT:-8545}"
RELAYER_PORT="${OPG_DEMO_RELAYER_PORT:-8402}"
DIR="${OPG_DEMO_DIR:-var/demo}"
DEPLOYMENTS="${OPG_DEPLOYMENTS_DIR:-deployments}"
RPC="http://127.0.0.1:${PORT}"
mkdir -p "$DIR"

if curl -s -o /dev/null -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$RPC"; then
  echo "demo: something already listens on $RPC; stop it or set OPG_DEMO_PORT" >&2
  exit 1
fi

anvil --port "$PORT" --host 127.0.0.1 --silent > "$DIR/anvil.log" 2>&1 &
ANVIL_PID=$!
cleanup() { kill "$ANVIL_PID" 2>/dev/null || true; wait "$ANVIL_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do
  curl -s -o /dev/null -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$RPC" && break
  sleep 0.1
done

echo "== anvil on $RPC; deploying with ape"
OPG_DEPLOYMENTS_DIR="$DEPLOYMENTS" APE_FOUNDRY_HOST="$RPC" ape run deploy --network ethereum:local:foundry 2>&1 \
  | grep -vE "^(INFO|WARNING|SUCCESS):|warn|^Input:|^\s+contracts/" || true
test -f "$DEPLOYMENTS/31337.json" || { echo "demo: deployment failed" >&2; exit 1; }

python scripts/demo.py --rpc-url "$RPC" --deployment "$DEPLOYMENTS/31337.json" --relayer-port "$RELAYER_PORT" --state-dir "$DIR" "$@"
