# Sourced by scripts/run and scripts/test: make .venv when missing, keep it in step
# with pyproject.toml, and export VENV_PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"
if ! "$PY_BOOT" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "shoal needs Python 3.11 or newer; $PY_BOOT is $("$PY_BOOT" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtual environment in $VENV" >&2
    "$PY_BOOT" -m venv "$VENV"
fi
STAMP="$VENV/.shoal-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "==> installing shoal and its test dependencies into $VENV" >&2
    if ! { "$VENV/bin/python" -m pip install --quiet --upgrade pip \
           && "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"; } >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "==> installing into $VENV failed (log above, also in $VENV/pip.log)" >&2
        exit 1
    fi
    touch "$STAMP"
fi
VENV_PY="$VENV/bin/python"
export VENV_PY ROOT
