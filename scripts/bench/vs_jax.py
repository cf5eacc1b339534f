#!/usr/bin/env python3
"""masklab's dense training step against JAX/XLA's, measured in one run on the same cores.

usage: python3 scripts/bench/vs_jax.py STEP_PHASES [ROUNDS [MODEL]]   (just vs-jax runs it)

MODEL is `mlp` (table4's MLP 784-256-256-10, the default) or `lenet`. Each round runs masklab's
tight-loop example (`examples/step_phases.rs`: batch 128, fused ops, SGD with momentum, 1000
timed steps on one fixed batch, LeNet 100) and `jax_mlp_step.py` (the same model, batch and
optimiser under jit with donated buffers, on one fixed batch) as separate processes. The order flips every round
(A B, B A, ...), so neither side always runs first after the other: on these VMs every other
process start pays the kernel's huge-page clearing. Prints each side's median and quartiles over
rounds and the median of the per-round ratios masklab ÷ JAX (below 1: masklab is faster).
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def masklab_step(binary, model):
    out = subprocess.run([binary, "dense", "dense", model], check=True, capture_output=True,
                         text=True).stdout
    # "forward … us, loss … us, backward … us, opt … us, total T"
    return float(out.strip().rsplit("total", 1)[1]) * 1e-6


def jax_step(model):
    script = os.path.join(HERE, "jax_mlp_step.py")
    args = [sys.executable, script] + (["lenet"] if model == "lenet" else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["jax_step_seconds"]


def quartiles(v):
    q = statistics.quantiles(v, n=4)
    return q[0], statistics.median(v), q[2]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    if rounds < 2:
        sys.exit(f"vs_jax.py: ROUNDS must be at least 2 (quartiles need two rounds), not {rounds}")
    model = sys.argv[3] if len(sys.argv) > 3 else "mlp"
    if model not in ("mlp", "lenet"):
        sys.exit(f"vs_jax.py: MODEL must be mlp or lenet, not {model!r}")
    ours, theirs = [], []
    for r in range(rounds):
        if r % 2 == 0:
            ours.append(masklab_step(binary, model))
            theirs.append(jax_step(model))
        else:
            theirs.append(jax_step(model))
            ours.append(masklab_step(binary, model))
        print(f"round {r + 1}/{rounds}: masklab {ours[-1] * 1e6:.0f} us, "
              f"JAX {theirs[-1] * 1e6:.0f} us", file=sys.stderr)
    ratios = [o / t for o, t in zip(ours, theirs)]
    report = {
        "model": model,
        "rounds": rounds,
        "masklab_step_us": [round(x * 1e6) for x in quartiles(ours)],
        "jax_step_us": [round(x * 1e6) for x in quartiles(theirs)],
        "ratio": [round(x, 3) for x in quartiles(ratios)],
    }
    print("step time as [q25, median, q75] over rounds; ratio = masklab / JAX per round")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
