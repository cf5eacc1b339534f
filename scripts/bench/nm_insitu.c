/* Where the N:M SpMM's large-batch time goes around its inner loop, measured apart from masklab.
 *
 * fma_ceiling.c times the inner loop alone (offsets and values in a tiny hot table). This
 * program runs the loop inside masklab's blocking (src/sparse/nm.rs, spmm_avx512): 510 rows of
 * A (one rayon chunk), K = 2048 kept entries per row split into blocks of 32 (2:4 over 64
 * columns), each block's 3-row groups reloading and storing their 24 accumulators, the values
 * and offsets of each row streamed from arrays a row (4 KiB) apart. Variants, each one change:
 *   masklab-like   - the structure above without software prefetch;
 *   no-acc-reload  - accumulators start from zero each block (what the reload costs);
 *   hot-streams    - every group reads the same 3 rows' values and offsets (streams in L1);
 *   nk64           - 64 entries per block (half the block switches);
 *   prefetch       - the next group's values, offsets and output prefetched (what masklab does);
 *   prefetch2/3    - the same, 2 and 3 groups ahead;
 *   block-major    - values and offsets laid out block by block, rows contiguous within a block;
 *   offs-bm+pf     - only the offsets block-major, the values prefetched.
 * The variants run interleaved in one process (best of 9), so the machine's drift hits all alike.
 *
 * Build and run:  gcc -O3 -mavx512f -mfma scripts/bench/nm_insitu.c -o /tmp/nm_insitu && /tmp/nm_insitu
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
enum { TILE = 128, KB = 64, R = 510, KTOT = 2048 };
static float packed[KB * TILE] __attribute__((aligned(64)));
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
float *vals; uint32_t *offs; float *out;
/* mode: 0 = as masklab (acc load/store per block, streams), 1 = no acc reload, 2 = hot streams, 3 = nk 64 per block, 4 = prefetch next triple */
static double run(int mode, int nk) {
    int kept = KTOT / 2; int blocks = kept / nk;
    double t0 = now();
    for (int kb = 0; kb < blocks; kb++) {
        for (int j = 0; j < R; j += 3) {
            __m512 acc[3][8];
            for (int t = 0; t < 3; t++) for (int v = 0; v < 8; v++)
                acc[t][v] = (kb == 0 || mode == 1) ? _mm512_setzero_ps() : _mm512_loadu_ps(out + (j + t) * TILE + 16 * v);
            const float *vp[3]; const uint32_t *op[3];
            for (int t = 0; t < 3; t++) {
                int row = mode == 2 ? t : j + t;
                if (mode == 8) { vp[t] = vals + (size_t)row * kept + kb * nk; op[t] = offs + (size_t)kb * R * nk + (size_t)row * nk; if (j + 3 + t < R) for (int e = 0; e < nk; e += 16) _mm_prefetch((const char*)(vals + (size_t)(j+3+t) * kept + kb * nk + e), _MM_HINT_T0); }
                else if (mode >= 7) { vp[t] = vals + (size_t)kb * R * nk + (size_t)row * nk; op[t] = offs + (size_t)kb * R * nk + (size_t)row * nk; }
                else { vp[t] = vals + (size_t)row * kept + kb * nk; op[t] = offs + (size_t)row * kept + kb * nk; }
                int d = mode == 5 ? 6 : mode == 6 ? 9 : 3;
                if (mode >= 4 && mode <= 6 && j + d + t < R) {
                    for (int e = 0; e < nk; e += 16) {
                        _mm_prefetch((const char*)(vals + (size_t)(j+d+t) * kept + kb * nk + e), _MM_HINT_T0);
                        _mm_prefetch((const char*)(offs + (size_t)(j+d+t) * kept + kb * nk + e), _MM_HINT_T0);
                    }
                    for (int v = 0; v < 8; v++) _mm_prefetch((const char*)(out + (j+d+t)*TILE + 16*v), _MM_HINT_T0);
                }
            }
            for (int e = 0; e < nk; e++)
                for (int t = 0; t < 3; t++) {
                    const float *p = packed + op[t][e];
                    __m512 x = _mm512_set1_ps(vp[t][e]);
                    for (int v = 0; v < 8; v++) acc[t][v] = _mm512_fmadd_ps(x, _mm512_load_ps(p + 16 * v), acc[t][v]);
                }
            for (int t = 0; t < 3; t++) for (int v = 0; v < 8; v++) _mm512_storeu_ps(out + (j + t) * TILE + 16 * v, acc[t][v]);
        }
    }
    double dt = now() - t0;
    return (double)R * kept * 8 / dt;
}
int main(void) {
    int kept = KTOT / 2;
    vals = aligned_alloc(64, sizeof(float) * R * kept); offs = aligned_alloc(64, 4 * R * kept); out = aligned_alloc(64, 4 * R * TILE);
    srand(1);
    for (int i = 0; i < KB * TILE; i++) packed[i] = 1e-3f * (i % 7);
    for (size_t i = 0; i < (size_t)R * kept; i++) { vals[i] = 1e-3f; size_t e = i % 32; offs[i] = (uint32_t)(((e / 2) * 4 + (e % 2) * 2 + rand() % 2) % KB) * TILE; }
    const char *names[] = {"masklab-like", "no-acc-reload", "hot-streams", "nk64", "prefetch", "prefetch2", "prefetch3", "block-major", "offs-bm+pf"};
    int nks[] = {32, 32, 32, 64, 32, 32, 32, 32, 32};
    double best[9] = {0};
    for (int rep = 0; rep < 9; rep++) for (int m = 0; m < 9; m++) { double r = run(m, nks[m]); if (r > best[m]) best[m] = r; }
    for (int m = 0; m < 9; m++) printf("%-14s %.2f G FMA/s\n", names[m], best[m] / 1e9);
}
