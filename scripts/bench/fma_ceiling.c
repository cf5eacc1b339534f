/* The ceiling of the N:M SpMM's inner loop on this CPU, measured apart from masklab.
 *
 * masklab's AVX-512 SpMM (src/sparse/nm.rs, tile_avx512) issues, per kept entry of A, one
 * broadcast and eight FMAs whose B operand is a 64-byte load from an L1-resident packed block,
 * at an offset read from memory: one load per FMA, because which row of B an entry needs is
 * data (its position in the group), and a register cannot be chosen by data. Dense GEMM loads
 * each B vector once for several rows of A. This program times three loops on L1-resident data,
 * interleaved in one process, and prints each one's FMA rate as a share of the FMA ports' peak:
 *   regs   - 24 independent FMA chains from registers (the ports' peak);
 *   shared - dense-like: 8 B loads shared by 3 rows (24 FMAs per 8 loads + 3 broadcasts);
 *   nm     - masklab's loop: 2:4 offsets, one B load per FMA (27 loads + 3 offsets per 24 FMAs).
 * The N:M kernel's speedup over dense at large batch is at most (M/N) * nm / shared, whatever
 * the tiling around it.
 *
 * Build and run:  gcc -O3 -mavx512f -mfma scripts/bench/fma_ceiling.c -o /tmp/fma_ceiling && /tmp/fma_ceiling
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROWS = 3, VECS = 8, KBLOCK = 64, TILE = 128, NK = 32, ITERS = 20000, REPEATS = 7 };
static float packed[KBLOCK * TILE] __attribute__((aligned(64)));
static float vals[ROWS][NK];
static uint32_t offs[ROWS][NK];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* FMA instructions per second of one loop; `sink` keeps the results alive. */
static double run(int mode, float *sink) {
    __m512 acc[ROWS][VECS];
    for (int t = 0; t < ROWS; t++)
        for (int v = 0; v < VECS; v++) acc[t][v] = _mm512_setzero_ps();
    const __m512 one = _mm512_set1_ps(1e-3f);
    double t0 = now();
    for (long it = 0; it < ITERS; it++) {
        for (int e = 0; e < NK; e++) {
            if (mode == 0) {
                for (int t = 0; t < ROWS; t++)
                    for (int v = 0; v < VECS; v++) acc[t][v] = _mm512_fmadd_ps(one, acc[t][v], one);
            } else if (mode == 1) {
                const float *p = packed + (e % KBLOCK) * TILE;
                __m512 b[VECS];
                for (int v = 0; v < VECS; v++) b[v] = _mm512_load_ps(p + 16 * v);
                for (int t = 0; t < ROWS; t++) {
                    __m512 x = _mm512_set1_ps(vals[t][e]);
                    for (int v = 0; v < VECS; v++) acc[t][v] = _mm512_fmadd_ps(x, b[v], acc[t][v]);
                }
            } else {
                for (int t = 0; t < ROWS; t++) {
                    const float *p = packed + offs[t][e];
                    __m512 x = _mm512_set1_ps(vals[t][e]);
                    for (int v = 0; v < VECS; v++)
                        acc[t][v] = _mm512_fmadd_ps(x, _mm512_load_ps(p + 16 * v), acc[t][v]);
                }
            }
        }
    }
    double dt = now() - t0;
    for (int t = 0; t < ROWS; t++)
        for (int v = 0; v < VECS; v++) *sink += _mm512_reduce_add_ps(acc[t][v]);
    return (double)ITERS * NK * ROWS * VECS / dt;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    srand(1);
    for (int i = 0; i < KBLOCK * TILE; i++) packed[i] = 1e-3f * (i % 7);
    /* 2:4: entry e of a row lies in group e/2 and takes a random one of its positions. */
    for (int t = 0; t < ROWS; t++)
        for (int e = 0; e < NK; e++) {
            vals[t][e] = 1e-3f;
            offs[t][e] = (uint32_t)(((e / 2) * 4 + (e % 2) * 2 + rand() % 2) % KBLOCK) * TILE;
        }
    const char *names[3] = {"regs", "shared", "nm"};
    double rate[3][REPEATS];
    float sink = 0;
    for (int r = 0; r < REPEATS; r++)
        for (int m = 0; m < 3; m++) rate[m][r] = run(m, &sink);
    double med[3];
    for (int m = 0; m < 3; m++) {
        qsort(rate[m], REPEATS, sizeof(double), cmp);
        med[m] = rate[m][REPEATS / 2];
    }
    for (int m = 0; m < 3; m++)
        printf("%-6s %.2f G FMA instructions/s  %.2f of peak\n", names[m], med[m] / 1e9, med[m] / med[0]);
    printf("2:4 ceiling over dense-like reuse: %.2fx (sink %g)\n", 2 * med[2] / med[1], sink);
    return 0;
}
