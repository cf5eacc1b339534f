# masklab tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Install what is missing: libhdf5-dev, pkg-config, the Fashion-MNIST Debian package.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    dpkg -s libhdf5-dev >/dev/null 2>&1 || need+=(libhdf5-dev)
    dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need+=(dataset-fashion-mnist)
    if [ ${#need[@]} -eq 0 ]; then echo "setup: nothing to install"; exit 0; fi
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        echo "setup: please run: apt-get install -y ${need[*]}"; exit 1; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"

# Release build of the CLI.
build: setup
    cargo build --release

# The whole test suite (unit, doc and CLI end-to-end tests); benches are compiled, not run
# (criterion in test mode would run every 4096² bench once, unoptimised).
test: setup
    cargo test --lib --bins --tests
    cargo test --doc
    cargo test --benches --no-run

# Regenerate a table (writes results/runs/TABLE/<profile>-<time>/ and prints the summary).
reproduce TABLE PROFILE="default": build
    ./target/release/masklab reproduce {{TABLE}} --profile {{PROFILE}}

# Every table's smoke profile, regressed against results/baselines/ (release build).
nightly: build
    just smoke-regress target/release/masklab

# Every table's smoke profile run by the binary BIN and regressed against results/baselines/;
# CI runs it with the test build's binary (target/debug/masklab), which needs no release build.
smoke-regress BIN="target/release/masklab":
    #!/usr/bin/env bash
    set -euo pipefail
    status=0
    for spec in experiments/*.toml; do
        t=$(basename "$spec" .toml)
        out="results/runs/$t/nightly-$(date -u +%Y%m%d-%H%M%S)"
        "{{BIN}}" run "$spec" --profile smoke --out "$out" --quiet
        "{{BIN}}" regress "$out" || status=1
    done
    exit $status

# Rewrite the committed baselines from fresh smoke runs.
baselines: build
    #!/usr/bin/env bash
    set -euo pipefail
    for spec in experiments/*.toml; do
        t=$(basename "$spec" .toml)
        out="results/runs/$t/baseline-$(date -u +%Y%m%d-%H%M%S)"
        ./target/release/masklab run "$spec" --profile smoke --out "$out" --quiet
        ./target/release/masklab regress "$out" --update
    done

# Benchmarks (criterion).
bench: setup
    cargo bench

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# `cargo check --features cuda` with the CUDA 13.0 compiler from PyPI wheels (no GPU needed).
# The unpacked toolkit is cached under target/cuda-13.0/. candle-kernels' build script compiles its
# kernels with nvcc; a check links and runs nothing, so `nvcc-check` compiles device code to
# unoptimised PTX only (`code=compute_XX`, `-Xcicc -O0`): the CUDA C++ is still compiled, in about a
# sixth of the time (no ptxas, no device optimiser: 10 s instead of 55 s per quantized-matmul file).
check-cuda:
    #!/usr/bin/env bash
    set -euo pipefail
    root="$PWD/target/cuda-13.0"
    if [ ! -x "$root/nvidia/cu13/bin/nvcc" ]; then
        mkdir -p "$root/wheels"
        python3 -m pip download --no-deps --only-binary=:all: --dest "$root/wheels" \
            nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
            nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
        for w in "$root"/wheels/*.whl; do python3 -m zipfile -e "$w" "$root"; done
        chmod -R u+x "$root/nvidia/cu13/bin" "$root/nvidia/cu13/nvvm/bin"
    fi
    cat > "$root/nvcc-check" <<'WRAP'
    #!/usr/bin/env bash
    args=()
    for a in "$@"; do args+=("${a//code=sm_/code=compute_}"); done
    exec "$CUDA_HOME/bin/nvcc" "${args[@]}" -Xcicc -O0
    WRAP
    chmod +x "$root/nvcc-check"
    export CUDA_HOME="$root/nvidia/cu13" CUDA_COMPUTE_CAP=90 CUDAFORGE_THREADS="$(nproc)"
    export NVCC="$root/nvcc-check" PATH="$CUDA_HOME/bin:$PATH"
    cargo check --features cuda --lib --bins
