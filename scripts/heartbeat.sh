#!/bin/sh
# tars-opt HEARTBEAT hook: run the optimization checks once and pass on their verdict.
#   exit 0 ok, 1 warning, 2 critical (an unusable config/database also exits 2).
# One summary line first (paste-able into the agent's log), then one line per check.
# Extra arguments go to `tars-opt heartbeat` (e.g. --json, --config FILE, --db FILE).
# TARS_OPT_BIN overrides the command (default: tars-opt on PATH, else python -m tars_opt).
set -u
if [ -n "${TARS_OPT_BIN:-}" ]; then
    exec $TARS_OPT_BIN heartbeat "$@"
elif command -v tars-opt >/dev/null 2>&1; then
    exec tars-opt heartbeat "$@"
else
    exec "${PYTHON:-python3}" -m tars_opt heartbeat "$@"
fi
