#!/usr/bin/env bash
# EMR bootstrap action: install mediapulse and its pinned dependencies into the app's own virtualenv.
#
# EMR runs it on every node before Spark starts, as the hadoop user (with passwordless sudo):
#   install.sh --artifacts s3://BUCKET/PREFIX/VERSION --wheel mediapulse-VERSION-py3-none-any.whl \
#              [--wheelhouse wheelhouse.tar] [--constraints constraints.txt] \
#              [--python /usr/bin/python3.11] [--venv /opt/mediapulse/venv]
# Locally, without S3 (tests, a laptop):
#   install.sh --local-wheel dist/mediapulse-VERSION-py3-none-any.whl --venv /tmp/venv \
#              [--local-wheelhouse wheelhouse.tar --local-constraints constraints.txt | --no-deps]
#
# --python creates the virtualenv (without the system's site-packages); the system interpreter gets
# nothing. The pinned dependencies (constraints.txt, written by `mediapulse emr package`) come from the
# release's wheelhouse only (pip --no-index --only-binary=:all:): no package index is reached and
# nothing is compiled on the node. The wheelhouse names the platform it was built for (TARGET); a node
# of another architecture, an older Python or an older glibc is refused before anything is installed.
# Then the wheel itself with --no-deps, so pip never pulls pyspark: EMR's Spark provides it.
# Spark runs the virtualenv's interpreter (PYSPARK_PYTHON, set by `emr launch` and the step).
# Idempotent: when the same mediapulse version is in the virtualenv it does nothing (--force reinstalls).
# Logs to stdout and, when writable, to /var/log/mediapulse-bootstrap.log (--log-file to change).
set -euo pipefail

readonly PROJECT=mediapulse

artifacts=""
wheel=""
wheelhouse="wheelhouse.tar"
constraints="constraints.txt"
python_bin="python3"
venv="/opt/${PROJECT}/venv"
local_wheel=""
local_wheelhouse=""
local_constraints=""
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
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --artifacts) need_value "$@"; artifacts="${2%/}"; shift 2 ;;
        --wheel) need_value "$@"; wheel="$2"; shift 2 ;;
        --wheelhouse) need_value "$@"; wheelhouse="$2"; shift 2 ;;
        --constraints) need_value "$@"; constraints="$2"; shift 2 ;;
        --python) need_value "$@"; python_bin="$2"; shift 2 ;;
        --venv) need_value "$@"; venv="${2%/}"; shift 2 ;;
        --local-wheel) need_value "$@"; local_wheel="$2"; shift 2 ;;
        --local-wheelhouse) need_value "$@"; local_wheelhouse="$2"; shift 2 ;;
        --local-constraints) need_value "$@"; local_constraints="$2"; shift 2 ;;
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
    if [[ $install_deps -eq 1 && ( -z "$local_wheelhouse" || -z "$local_constraints" ) ]]; then
        die "--local-wheel needs --local-wheelhouse FILE and --local-constraints FILE, or --no-deps"
    fi
else
    [[ "$artifacts" == s3://* ]] || die "--artifacts s3://... is required (or --local-wheel)"
    [[ -n "$wheel" ]] || die "--wheel NAME is required"
fi
[[ "$wheel" == "${PROJECT}"-*.whl ]] || die "not a ${PROJECT} wheel: $wheel"
[[ "$venv" == /* ]] || die "--venv must be an absolute path: $venv"
version="${wheel#"${PROJECT}"-}"
version="${version%%-*}"
venv_python="$venv/bin/python"

# The nearest existing directory on the way to the virtualenv decides whether sudo is needed.
writable_target="$venv"
while [[ ! -e "$writable_target" ]]; do writable_target="$(dirname "$writable_target")"; done
sudo_cmd=()
if [[ $EUID -ne 0 && ! -w "$writable_target" ]]; then
    command -v sudo >/dev/null 2>&1 || die "cannot write $writable_target and there is no sudo"
    sudo_cmd=(sudo)
fi

installed=""
if [[ -x "$venv_python" ]]; then
    installed="$("$venv_python" -c 'import importlib.metadata as m; print(m.version("mediapulse"))' 2>/dev/null || true)"
    if [[ "$installed" == "$version" && $force -eq 0 ]]; then
        log "${PROJECT} $version is already installed in $venv; nothing to do"
        exit 0
    fi
    check_python="$venv_python"
else
    command -v "$python_bin" >/dev/null 2>&1 || die "no such interpreter: $python_bin"
    check_python="$python_bin"
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

if [[ -n "$local_wheel" ]]; then
    cp "$local_wheel" "$workdir/$wheel"
    if [[ $install_deps -eq 1 ]]; then
        cp "$local_wheelhouse" "$workdir/wheelhouse.tar"
        cp "$local_constraints" "$workdir/constraints.txt"
    fi
else
    log "fetching $artifacts/$wheel"
    aws s3 cp --only-show-errors "$artifacts/$wheel" "$workdir/$wheel"
    if [[ $install_deps -eq 1 ]]; then
        log "fetching $artifacts/$wheelhouse and $artifacts/$constraints"
        aws s3 cp --only-show-errors "$artifacts/$wheelhouse" "$workdir/wheelhouse.tar"
        aws s3 cp --only-show-errors "$artifacts/$constraints" "$workdir/constraints.txt"
    fi
fi

if [[ $install_deps -eq 1 ]]; then
    tar -xf "$workdir/wheelhouse.tar" -C "$workdir"
    target="$workdir/wheelhouse/TARGET"
    [[ -f "$target" ]] || die "the wheelhouse has no TARGET file: build it with \`mediapulse emr package\`"
    want_arch="$(sed -n 's/^architecture=//p' "$target")"
    want_python="$(sed -n 's/^python=//p' "$target")"
    want_glibc="$(sed -n 's/^glibc=//p' "$target")"
    have_arch="$(uname -m)"
    [[ "$have_arch" == "$want_arch" ]] ||
        die "the wheelhouse is for $want_arch but this node is $have_arch: package the release for the nodes (emr.wheelhouse.architecture)"
    fits='
import platform, sys
python, glibc = (tuple(int(p) for p in v.split(".")) for v in sys.argv[1:3])
have_glibc = tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2] if p.isdigit())
sys.exit(0 if sys.version_info[:2] == python[:2] and sys.version_info[:3] >= python and have_glibc >= glibc else 1)'
    if ! "$check_python" -c "$fits" "$want_python" "$want_glibc"; then
        have="$("$check_python" -c 'import platform; print(platform.python_version(), "glibc", platform.libc_ver()[1])')"
        die "the wheelhouse is for CPython >= $want_python (same minor) and glibc >= $want_glibc, this node has CPython $have: set emr.wheelhouse to the nodes' versions and package again"
    fi
    log "the wheelhouse fits this node ($have_arch; built for CPython >= $want_python, glibc >= $want_glibc)"
fi

# Only now, with everything fetched and checked, is anything created or installed.
if [[ ! -x "$venv_python" ]]; then
    log "creating virtualenv $venv with $python_bin"
    "${sudo_cmd[@]}" "$python_bin" -m venv "$venv" || die "could not create the virtualenv $venv"
fi
pip=("${sudo_cmd[@]}" "$venv_python" -m pip install --isolated --no-input --disable-pip-version-check
    --no-index --only-binary=:all:)
if [[ $install_deps -eq 1 ]]; then
    log "installing $(grep -cv '^#' "$workdir/constraints.txt") pinned dependencies from the wheelhouse"
    "${pip[@]}" --find-links "$workdir/wheelhouse" -r "$workdir/constraints.txt" ||
        die "a pinned dependency could not be installed from the wheelhouse (see pip above); no index was tried"
fi
log "installing $wheel into $venv (was: ${installed:-not installed})"
"${pip[@]}" --no-deps --force-reinstall "$workdir/$wheel"

"$venv_python" -c 'import streaming, sinks, bootstrap' || die "installed, but the packages do not import"
log "${PROJECT} $version installed in $venv"
