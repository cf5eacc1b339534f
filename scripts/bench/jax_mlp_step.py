#!/usr/bin/env python3
"""The training step a researcher would time instead: JAX/XLA (jit, donated buffers) on the same
model, batch and optimiser as masklab's table4 models and table7b's dense step, on the same cores.

usage: python3 scripts/bench/jax_mlp_step.py [HIDDEN [BATCH]]   (defaults: 256,256 and 128)
       python3 scripts/bench/jax_mlp_step.py lenet [BATCH]
MLP 784-HIDDEN-10 with biases and ReLU; or masklab's LeNet (conv5 16 pad 2, ReLU, max-pool 2,
conv5 32, ReLU, max-pool 2, fc 128 ReLU, fc 10, all with biases, NCHW). Softmax cross-entropy, SGD
with momentum 0.9 and coupled weight decay 5e-4 (masklab's defaults). Prints one JSON line: the
median seconds per step over 30 blocks of 20 steps (each block ends on block_until_ready), after
50 warm-up steps (LeNet: 10 blocks of 5 after 10).
"""
import json
import sys
import time

import jax
import jax.numpy as jnp

lenet = len(sys.argv) > 1 and sys.argv[1] == "lenet"
hidden = [] if lenet else [int(h) for h in (sys.argv[1] if len(sys.argv) > 1 else "256,256").split(",")]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
key = jax.random.PRNGKey(0)


def uniform(shape, fan_in):
    global key
    key, k = jax.random.split(key)
    bound = (6.0 / fan_in) ** 0.5
    return jax.random.uniform(k, shape, jnp.float32, -bound, bound)


if lenet:
    # (kernel, bias) per layer: OIHW convolutions, then (in, out) dense layers.
    params = [(uniform((16, 1, 5, 5), 25), jnp.zeros((16,), jnp.float32)),
              (uniform((32, 16, 5, 5), 400), jnp.zeros((32,), jnp.float32)),
              (uniform((800, 128), 800), jnp.zeros((128,), jnp.float32)),
              (uniform((128, 10), 128), jnp.zeros((10,), jnp.float32))]
    x_shape = (batch, 1, 28, 28)
else:
    sizes = [784] + hidden + [10]
    params = [(uniform((fan_in, fan_out), fan_in), jnp.zeros((fan_out,), jnp.float32))
              for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    x_shape = (batch, 784)
mom = jax.tree_util.tree_map(jnp.zeros_like, params)
key, kx, ky = jax.random.split(key, 3)
x = jax.random.uniform(kx, x_shape, jnp.float32)
y = jax.random.randint(ky, (batch,), 0, 10)


def conv_relu_pool(h, w, b, pad):
    h = jax.lax.conv_general_dilated(h, w, (1, 1), [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    h = jax.nn.relu(h + b[None, :, None, None])
    return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def loss_fn(params, x, y):
    h = x
    if lenet:
        h = conv_relu_pool(h, *params[0], 2)
        h = conv_relu_pool(h, *params[1], 0)
        h = h.reshape(h.shape[0], -1)
        dense = params[2:]
    else:
        dense = params
    for i, (w, b) in enumerate(dense):
        h = h @ w + b
        if i + 1 < len(dense):
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
warm, n_blocks, per_block = (10, 10, 5) if lenet else (50, 30, 20)
for _ in range(warm):
    params, mom, loss = step(params, mom, x, y, lr)
loss.block_until_ready()
blocks = []
for _ in range(n_blocks):
    t = time.perf_counter()
    for _ in range(per_block):
        params, mom, loss = step(params, mom, x, y, lr)
    loss.block_until_ready()
    blocks.append((time.perf_counter() - t) / per_block)
blocks.sort()
print(json.dumps({"model": "lenet" if lenet else "mlp", "hidden": hidden, "batch": batch, "jax_step_seconds": blocks[len(blocks) // 2],
                  "q25": blocks[len(blocks) // 4], "q75": blocks[3 * len(blocks) // 4],
                  "jax": jax.__version__}))
