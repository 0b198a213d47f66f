#!/usr/bin/env bash
# `make deploy`: bootstrap the Prefect server (work pool dte-process, Variable dte-mode), then
# register every deployment of prefect.yaml. Idempotent; rerun after changing prefect.yaml.
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api deployments/deploy.sh          # all deployments
#   deployments/deploy.sh -n market-open-scan -n eod-closeout                  # only these
#
# PREFECT_API_URL: from the environment, else the active Prefect profile, else the local server
# http://127.0.0.1:4200/api. VENV (default .venv) is the virtualenv with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PREFECT="$VENV/bin/prefect"

export DO_NOT_TRACK=1                       # Prefect SDK telemetry off
export PREFECT_SERVER_ANALYTICS_ENABLED=false

if [ -z "${PREFECT_API_URL:-}" ]; then
  PREFECT_API_URL=$("$PY" -c 'from prefect.settings import get_current_settings as s; print(s().api.url or "")')
  export PREFECT_API_URL=${PREFECT_API_URL:-http://127.0.0.1:4200/api}
fi
echo "deploy: Prefect API $PREFECT_API_URL"

"$PY" deployments/bootstrap.py

# DTE_HOME is unset for the deploy on purpose: prefect.yaml's pull step `{{ $DTE_HOME }}` must be
# stored verbatim and resolved by each worker at run time (`prefect deploy` would substitute the
# deploying shell's value and freeze that path into every deployment).
if [ "$#" -eq 0 ]; then
  set -- --all
fi
exec env -u DTE_HOME "$PREFECT" --no-prompt deploy --prefect-file prefect.yaml "$@"
