#!/usr/bin/env python3
"""The training step a researcher would time instead: JAX/XLA (jit, donated buffers) on the same
MLP, batch and optimiser as masklab's table4 MLP and table7b's dense step, on the same cores.

usage: python3 scripts/bench/jax_mlp_step.py [HIDDEN [BATCH]]   (defaults: 256,256 and 128)
MLP 784-HIDDEN-10 with biases and ReLU, softmax cross-entropy, SGD with momentum 0.9 and coupled
weight decay 5e-4 (masklab's defaults). Prints one JSON line: the median seconds per step over 30
blocks of 20 steps (each block ends on block_until_ready), after 50 warm-up steps.
"""
import json
import sys
import time

import jax
import jax.numpy as jnp

hidden = [int(h) for h in (sys.argv[1] if len(sys.argv) > 1 else "256,256").split(",")]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
sizes = [784] + hidden + [10]
key = jax.random.PRNGKey(0)
params = []
for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    key, k = jax.random.split(key)
    bound = (6.0 / fan_in) ** 0.5
    params.append((jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -bound, bound),
                   jnp.zeros((fan_out,), jnp.float32)))
mom = jax.tree_util.tree_map(jnp.zeros_like, params)
key, kx, ky = jax.random.split(key, 3)
x = jax.random.uniform(kx, (batch, 784), jnp.float32)
y = jax.random.randint(ky, (batch,), 0, 10)


def loss_fn(params, x, y):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i + 1 < len(params):
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def step(params, mom, x, y, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    d = jax.tree_util.tree_map(lambda g, p: g + 5e-4 * p, grads, params)
    mom = jax.tree_util.tree_map(lambda m, g: 0.9 * m + g, mom, d)
    params = jax.tree_util.tree_map(lambda p, m: p - lr * m, params, mom)
    return params, mom, loss


step = jax.jit(step, donate_argnums=(0, 1))
lr = jnp.float32(0.05)
for _ in range(50):
    params, mom, loss = step(params, mom, x, y, lr)
loss.block_until_ready()
blocks = []
for _ in range(30):
    t = time.perf_counter()
    for _ in range(20):
        params, mom, loss = step(params, mom, x, y, lr)
    loss.block_until_ready()
    blocks.append((time.perf_counter() - t) / 20)
blocks.sort()
print(json.dumps({"hidden": hidden, "batch": batch, "jax_step_seconds": blocks[len(blocks) // 2],
                  "q25": blocks[len(blocks) // 4], "q75": blocks[3 * len(blocks) // 4],
                  "jax": jax.__version__}))
