/* bench/fma_peak.h — the measured AVX2 FMA peak of all pool threads (bench/fma_peak.c). */
#ifndef CG_BENCH_FMA_PEAK_H
#define CG_BENCH_FMA_PEAK_H
/* GFLOP/s (an FMA counts 2), the best of `reps` runs. Requires AVX2+FMA. */
double bench_fma_peak_gflops(int reps);
#endif
