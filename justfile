# masklab tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Install what is missing: libhdf5-dev, pkg-config, the Fashion-MNIST Debian package, and
# table6's pinned language model and texts (scripts/setup/lm_assets.py, into the cache).
setup: setup-packages
    python3 scripts/setup/lm_assets.py

# The Debian packages alone.
setup-packages:
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

# Every table's nightly profile (~20 min on 2 cores: 8192² solves, trained weights, Fashion-MNIST
# training with three seeds), regressed against results/baselines/<table>.nightly.parquet (times
# as ratios to the run's yardstick) and appended to results/history/<table>.parquet; then each
# table's trend (`masklab history TABLE`). Exit 1 if any table regressed.
nightly: build
    #!/usr/bin/env bash
    set -euo pipefail
    status=0
    for spec in experiments/*.toml; do
        t=$(basename "$spec" .toml)
        out="results/runs/$t/nightly-$(date -u +%Y%m%d-%H%M%S)"
        ./target/release/masklab run "$spec" --profile nightly --out "$out" --quiet
        ./target/release/masklab regress "$out" || status=1
        ./target/release/masklab history "$t" --append "$out"
    done
    exit $status

# Rewrite the nightly baselines (results/baselines/<table>.nightly.parquet) from fresh runs.
nightly-baselines: build
    #!/usr/bin/env bash
    set -euo pipefail
    for spec in experiments/*.toml; do
        t=$(basename "$spec" .toml)
        out="results/runs/$t/nightly-baseline-$(date -u +%Y%m%d-%H%M%S)"
        ./target/release/masklab run "$spec" --profile nightly --out "$out" --quiet
        ./target/release/masklab regress "$out" --update
    done

# Every table's smoke profile run by the binary BIN and regressed against results/baselines/;
# CI runs it with the test build's binary (target/debug/masklab), which needs no release build.
smoke-regress BIN="target/release/masklab":
    #!/usr/bin/env bash
    set -euo pipefail
    status=0
    for spec in experiments/*.toml; do
        t=$(basename "$spec" .toml)
        out="results/runs/$t/smoke-$(date -u +%Y%m%d-%H%M%S)"
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

# masklab's dense training step (MODEL mlp or lenet) against JAX/XLA's, in one run on these cores
# (scripts/bench/vs_jax.py: ROUNDS paired process runs, order flipped each round). JAX comes
# from a project-local directory, target/jax-pkgs, filled by `pip install --target` on first use.
vs-jax ROUNDS="15" MODEL="mlp":
    #!/usr/bin/env bash
    set -euo pipefail
    export PYTHONPATH="$PWD/target/jax-pkgs"
    if ! python3 -c "import jax" 2>/dev/null; then
        python3 -m pip install -q --upgrade --target "$PYTHONPATH" jax==0.10.2 jaxlib==0.10.2
    fi
    cargo build --release --example step_phases
    python3 scripts/bench/vs_jax.py target/release/examples/step_phases {{ROUNDS}} {{MODEL}}

# Formatting, lints and rustdoc (broken or private doc links fail).
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items

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

# Scale-out on a real Slurm (opt-in; CI does not run it): start a single-node Slurm here from
# Debian's slurm-wlm and munge, submit TABLE's PROFILE as a TASKS-task job array
# (scripts/slurm/table.sbatch, one --shard each), merge the shards, run the same spec on this
# machine alone, and check the two summary.csv are byte-identical.
test-slurm TABLE="table2" PROFILE="smoke" TASKS="4": build
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slurm-wlm munge
    fi
    eval "$(scripts/slurm/local-cluster.sh start target/slurm)"
    trap 'scripts/slurm/local-cluster.sh stop target/slurm' EXIT
    spec="experiments/{{TABLE}}.toml"
    out="$PWD/target/slurm-runs/{{TABLE}}-{{PROFILE}}-$(date -u +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    SECONDS=0
    sbatch --wait --array=0-$(( {{TASKS}} - 1 )) --chdir="$PWD" --output="$out/slurm-%A_%a.out" \
        --export=ALL,SPEC="$spec",PROFILE={{PROFILE}},OUT="$out",MASKLAB="$PWD/target/release/masklab" \
        scripts/slurm/table.sbatch
    echo "test-slurm: job array of {{TASKS}} tasks done after ${SECONDS}s"
    ./target/release/masklab merge "$out"/shard-* --out "$out/merged"
    ./target/release/masklab run "$spec" --profile {{PROFILE}} --out "$out/single" --quiet
    cmp "$out/merged/summary.csv" "$out/single/summary.csv"
    echo "test-slurm: merged shards equal the single-machine run byte for byte ($out/merged/summary.csv), ${SECONDS}s in all"

# Re-execute the notebooks headless, outputs saved in place (nbconvert from a project-local venv,
# target/notebooks-venv, created with pip on first use). Each notebook reads its table's newest
# `default` run (else the newest of any profile); a table without a run gets its smoke run first.
notebooks: build
    #!/usr/bin/env bash
    set -euo pipefail
    venv=target/notebooks-venv
    if [ ! -x "$venv/bin/jupyter" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q nbconvert nbclient ipykernel pandas pyarrow matplotlib
    fi
    for t in table1 table2 table3 table4a table4b table5 table6 table7 table7b; do
        if ! ls results/runs/$t/*/summary.parquet >/dev/null 2>&1; then
            ./target/release/masklab run "experiments/$t.toml" --profile smoke \
                --out "results/runs/$t/smoke-$(date -u +%Y%m%d-%H%M%S)" --quiet
        fi
    done
    "$venv/bin/jupyter" nbconvert --to notebook --execute --inplace notebooks/*.ipynb
