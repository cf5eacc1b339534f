#!/usr/bin/env python3
"""The dense product a JAX user would time instead, in f32 or bf16: jit-compiled `x @ w` on the
same shapes and cores as `masklab gemm` (forward: Y = X·Wᵀ, W stored as Wᵀ), so the note can
give masklab's dense bf16 reference beside JAX/XLA's.

usage: python3 scripts/bench/jax_matmul.py OUTxIN BATCH [float32|bfloat16]
prints one JSON line: the median seconds of 30 runs after a warm-up.
"""
import json
import sys
import time

import jax
import jax.numpy as jnp

shape, batch = sys.argv[1], int(sys.argv[2])
dtype = sys.argv[3] if len(sys.argv) > 3 else "float32"
out, inp = (int(v) for v in shape.split("x"))
w = jnp.asarray(jax.random.normal(jax.random.PRNGKey(0), (inp, out)), dtype=dtype)
x = jnp.asarray(jax.random.normal(jax.random.PRNGKey(1), (batch, inp)), dtype=dtype)
f = jax.jit(lambda x, w: x @ w)
f(x, w).block_until_ready()
times = []
for _ in range(30):
    t = time.perf_counter()
    f(x, w).block_until_ready()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"shape": shape, "batch": batch, "dtype": dtype,
                  "jax_seconds": times[len(times) // 2], "jax": jax.__version__}))
