#!/usr/bin/env python3
"""A masklab external solver: a random feasible transposable N:M mask per block.

Protocol: `random_feasible.py SCORES.npy MASKS.npy N M`. SCORES.npy holds float32 scores of
shape [B, M, M]; write MASKS.npy, uint8 0/1 of the same shape, with exactly N kept in every row
and column of every block; optionally print {"seconds": S} as the last line of stdout.

Each block's mask is C[i, j] = ((j - i) mod M) < N (N kept per row and column) with its rows
and columns permuted at random: feasible by construction, blind to the scores — a floor that
any real solver should beat.
"""
import json
import sys
import time

import numpy as np


def main() -> None:
    scores_path, masks_path, n, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    scores = np.load(scores_path)
    start = time.perf_counter()
    b = scores.shape[0]
    assert scores.shape == (b, m, m), scores.shape
    rng = np.random.default_rng(0)
    i = np.arange(m)
    base = (((i[None, :] - i[:, None]) % m) < n).astype(np.uint8)  # [M, M]
    rows = np.argsort(rng.random((b, m)), axis=1)
    cols = np.argsort(rng.random((b, m)), axis=1)
    masks = base[rows[:, :, None], cols[:, None, :]]  # [B, M, M]
    seconds = time.perf_counter() - start
    np.save(masks_path, masks.astype(np.uint8))
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
