#!/usr/bin/env python3
"""The dense baseline a researcher would use instead: numpy's matmul (OpenBLAS) on the same
shapes and cores as `masklab gemm`, so the note can give masklab's dense time beside numpy's.

usage: OPENBLAS_NUM_THREADS=2 python3 scripts/bench/numpy_gemm.py OUTxIN BATCH [forward|backward|update]
prints one JSON line: the median seconds of 30 runs after 3 warm-ups.
"""
import json
import sys
import time

import numpy as np

shape, batch = sys.argv[1], int(sys.argv[2])
op = sys.argv[3] if len(sys.argv) > 3 else "forward"
out, inp = (int(v) for v in shape.split("x"))
rng = np.random.default_rng(0)
w = rng.standard_normal((out, inp), dtype=np.float32)
if op == "forward":
    x = rng.standard_normal((batch, inp), dtype=np.float32)
    run = lambda: x @ w.T
elif op == "backward":
    dy = rng.standard_normal((batch, out), dtype=np.float32)
    run = lambda: dy @ w
else:
    g = rng.standard_normal((batch, out), dtype=np.float32)
    x = rng.standard_normal((batch, inp), dtype=np.float32)
    run = lambda: g.T @ x
for _ in range(3):
    run()
times = []
for _ in range(30):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"shape": shape, "batch": batch, "op": op, "numpy_seconds": times[len(times) // 2],
                  "numpy": np.__version__}))
