#!/usr/bin/env bash
# Runs tests/sdk/test_sdk.py (Tencent's Python SDKs against the emulator):
# installs the SDKs into a venv under target/ (or with pip --user when venv
# is missing), builds and starts `tcbackup emulator` on a free port
# with known keys, waits for it to listen, runs the test, stops the
# emulator, and exits with the test's status.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/sdk-venv
PACKAGES=(tencentcloud-sdk-python-redis tencentcloud-sdk-python-postgres)

if [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >/dev/null 2>&1; then
    PY=$VENV/bin/python
else
    echo "run.sh: python3 venv unavailable, installing with pip --user" >&2
    PY=python3
fi
if ! "$PY" -c 'import tencentcloud.redis, tencentcloud.postgres' 2>/dev/null; then
    if [ "$PY" = python3 ]; then
        python3 -m pip install --quiet --disable-pip-version-check --user "${PACKAGES[@]}"
    else
        "$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
    fi
fi

cargo build --quiet --bin tcbackup
TCBACKUP=$TARGET/debug/tcbackup

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
export TENCENTCLOUD_SECRET_ID=AKIDsdkTestTcbackup00000000000EXAMPLE
export TENCENTCLOUD_SECRET_KEY=sdkTestSecretKeyTcbackup000EXAMPLE
LOG=$TARGET/sdk-emulator.log

"$TCBACKUP" emulator --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
EMU_PID=$!
stop_emulator() {
    kill "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
}
trap stop_emulator EXIT

# Wait until the port accepts connections: at most 30 s, and stop early if
# the emulator died.
listening=0
for _ in $(seq 1 300); do
    if "$PY" -c "import socket, sys; s = socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $PORT)))"; then
        listening=1
        break
    fi
    if ! kill -0 "$EMU_PID" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ "$listening" != 1 ]; then
    echo "run.sh: the emulator did not start listening on port $PORT" >&2
    cat "$LOG" >&2
    exit 1
fi

set +e
TCB_EMU_ENDPOINT=127.0.0.1:$PORT "$PY" tests/sdk/test_sdk.py -v
status=$?
set -e
exit "$status"
