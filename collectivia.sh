#!/usr/bin/env bash
# Collectivia — set up what is missing, then run the main job or the tests.
#
#   ./collectivia.sh start   install (first time only), index corpora/, then serve the chat
#   ./collectivia.sh test    install (first time only), then run the whole test suite
#   ./collectivia.sh setup   install only
#
# Installs from the project's own files: requirements.lock (exact versions, nothing is resolved), then the project
# itself, into .venv/ with Python 3.11+; system packages (tesseract with French, poppler, Chromium) through apt-get
# when run as root on Debian/Ubuntu. COLLECTIVIA_TORCH_INDEX picks the PyTorch build (see README).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
STAMP="$VENV/.collectivia-installed"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

system_packages() {
    # Only what is missing; apt-get only when we may use it.
    local wanted=()
    command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx fra || wanted+=(tesseract-ocr tesseract-ocr-fra)
    command -v pdftoppm >/dev/null 2>&1 || wanted+=(poppler-utils)
    [ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libmagic.so.1 ] || wanted+=(libmagic1)
    fc-list 2>/dev/null | grep -qi dejavu || wanted+=(fonts-dejavu-core)
    # OpenCV, loaded by unstructured's OCR path, needs libGL and GLib.
    ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || wanted+=(libgl1)
    ldconfig -p 2>/dev/null | grep -q 'libgthread-2.0.so.0' || wanted+=(libglib2.0-0)
    if [ "${1:-}" = "test" ]; then
        command -v chromium >/dev/null 2>&1 || wanted+=(chromium)
        # The chat history tests also run against a throwaway PostgreSQL server.
        ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || wanted+=(postgresql)
    fi
    [ ${#wanted[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        log "Installing system packages: ${wanted[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
    else
        log "Missing system packages (install them as root): ${wanted[*]}"
        log "Without tesseract-ocr-fra, scanned PDFs are reported and skipped."
    fi
}

python_packages() {
    local fingerprint
    fingerprint=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && "$VENV/bin/python" -c 'import collectivia' 2>/dev/null; then
        return 0
    fi
    local python
    python=$(find_python)
    [ -x "$VENV/bin/python" ] || { log "Creating $VENV with $python"; "$python" -m venv "$VENV"; }
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
    log "Installing PyTorch 2.13.0 from ${COLLECTIVIA_TORCH_INDEX:-the configured pip index}"
    if [ -n "${COLLECTIVIA_TORCH_INDEX:-}" ]; then
        "${pip[@]}" install -q "torch==2.13.0" --index-url "$COLLECTIVIA_TORCH_INDEX"
    else
        "${pip[@]}" install -q --no-deps "torch==2.13.0"
    fi
    log "Installing the locked dependencies (requirements.lock, no resolution)"
    "${pip[@]}" install -q --no-deps -r requirements.lock
    "${pip[@]}" install -q --no-deps --no-build-isolation -e .
    echo "$fingerprint" > "$STAMP"
}

setup() {
    system_packages "${1:-}"
    python_packages
}

cmd=${1:-start}
shift || true
case "$cmd" in
    setup)
        setup
        ;;
    start)
        setup
        log "Indexing corpora/"
        "$VENV/bin/collectivia" ingest corpora/ || log "Some files could not be indexed (see above); continuing."
        log "Chat on http://localhost:${COLLECTIVIA_CHAT__PORT:-8000} (demo passwords in README.md)"
        exec "$VENV/bin/collectivia" serve "$@"
        ;;
    test)
        setup test
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: $0 [start|test|setup] [args...]" >&2
        exit 2
        ;;
esac
