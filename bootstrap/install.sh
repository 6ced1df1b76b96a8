#!/usr/bin/env bash
# EMR bootstrap action: install the mediapulse wheel and its pinned dependencies into the nodes' Python.
#
# EMR runs it on every node before Spark starts, as the hadoop user (with passwordless sudo):
#   install.sh --artifacts s3://BUCKET/PREFIX/VERSION --wheel mediapulse-VERSION-py3-none-any.whl \
#              [--constraints constraints.txt] [--python /usr/bin/python3.11] [--pip-args "--index-url URL"]
# Locally, without S3 (tests, a laptop):
#   install.sh --local-wheel dist/mediapulse-VERSION-py3-none-any.whl --target-venv /tmp/venv \
#              [--local-constraints constraints.txt | --no-deps] [--pip-args "--no-index"]
#
# The pinned dependencies (constraints.txt, written by `mediapulse emr package`) are installed first,
# then the wheel itself with --no-deps, so pip never pulls pyspark: EMR's Spark provides it.
# Idempotent: when the same mediapulse version is already installed it does nothing (--force reinstalls).
# Logs to stdout and, when writable, to /var/log/mediapulse-bootstrap.log (--log-file to change).
set -euo pipefail

readonly PROJECT=mediapulse

artifacts=""
wheel=""
constraints="constraints.txt"
python_bin="python3"
pip_args=""
local_wheel=""
local_constraints=""
target_venv=""
install_deps=1
force=0
log_file="/var/log/mediapulse-bootstrap.log"

log() {
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) ${PROJECT}-bootstrap: $*"
    printf '%s\n' "$line"
    if [[ -n "$log_file" ]] && { [[ -w "$log_file" ]] || { [[ ! -e "$log_file" ]] && [[ -w "$(dirname "$log_file")" ]]; }; }; then
        printf '%s\n' "$line" >>"$log_file"
    fi
}

die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --artifacts) need_value "$@"; artifacts="${2%/}"; shift 2 ;;
        --wheel) need_value "$@"; wheel="$2"; shift 2 ;;
        --constraints) need_value "$@"; constraints="$2"; shift 2 ;;
        --python) need_value "$@"; python_bin="$2"; shift 2 ;;
        --pip-args) need_value "$@"; pip_args="$2"; shift 2 ;;
        --local-wheel) need_value "$@"; local_wheel="$2"; shift 2 ;;
        --local-constraints) need_value "$@"; local_constraints="$2"; shift 2 ;;
        --target-venv) need_value "$@"; target_venv="$2"; shift 2 ;;
        --log-file) need_value "$@"; log_file="$2"; shift 2 ;;
        --no-deps) install_deps=0; shift ;;
        --force) force=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

if [[ -n "$local_wheel" ]]; then
    [[ -f "$local_wheel" ]] || die "no such wheel: $local_wheel"
    wheel="$(basename "$local_wheel")"
    if [[ $install_deps -eq 1 && -z "$local_constraints" ]]; then
        die "--local-wheel needs --local-constraints FILE or --no-deps"
    fi
else
    [[ "$artifacts" == s3://* ]] || die "--artifacts s3://... is required (or --local-wheel)"
    [[ -n "$wheel" ]] || die "--wheel NAME is required"
fi
[[ "$wheel" == "${PROJECT}"-*.whl ]] || die "not a ${PROJECT} wheel: $wheel"
version="${wheel#"${PROJECT}"-}"
version="${version%%-*}"

# Into a throwaway virtualenv (no sudo), or into the node's own interpreter (sudo unless root).
sudo_cmd=()
if [[ -n "$target_venv" ]]; then
    if [[ ! -x "$target_venv/bin/python" ]]; then
        log "creating virtualenv $target_venv with $python_bin"
        "$python_bin" -m venv "$target_venv"
    fi
    python_bin="$target_venv/bin/python"
elif [[ $EUID -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
fi
command -v "$python_bin" >/dev/null 2>&1 || die "no such interpreter: $python_bin"

installed="$("$python_bin" -c 'import importlib.metadata as m; print(m.version("mediapulse"))' 2>/dev/null || true)"
if [[ "$installed" == "$version" && $force -eq 0 ]]; then
    log "${PROJECT} $version is already installed for $python_bin; nothing to do"
    exit 0
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

if [[ -n "$local_wheel" ]]; then
    cp "$local_wheel" "$workdir/$wheel"
    [[ $install_deps -eq 0 ]] || cp "$local_constraints" "$workdir/constraints.txt"
else
    log "fetching $artifacts/$wheel"
    aws s3 cp --only-show-errors "$artifacts/$wheel" "$workdir/$wheel"
    if [[ $install_deps -eq 1 ]]; then
        aws s3 cp --only-show-errors "$artifacts/$constraints" "$workdir/constraints.txt"
    fi
fi

if ! "$python_bin" -m pip --version >/dev/null 2>&1; then
    log "bootstrapping pip for $python_bin"
    "${sudo_cmd[@]}" "$python_bin" -m ensurepip --upgrade
fi

read -r -a extra_pip_args <<<"$pip_args"
pip=("${sudo_cmd[@]}" "$python_bin" -m pip install --no-input --disable-pip-version-check "${extra_pip_args[@]}")

if [[ $install_deps -eq 1 ]]; then
    log "installing pinned dependencies ($(grep -cv '^#' "$workdir/constraints.txt") packages)"
    "${pip[@]}" -r "$workdir/constraints.txt"
fi
log "installing $wheel (was: ${installed:-not installed})"
"${pip[@]}" --no-deps --force-reinstall "$workdir/$wheel"

"$python_bin" -c 'import streaming, sinks, bootstrap' || die "installed, but the packages do not import"
log "${PROJECT} $version installed for $python_bin"
