/*
 * kernels/cpu/avx2.h — the AVX2+FMA kernels' entry points.
 *
 * cg_cpu_has_avx2() asks cpuid (through the compiler's __builtin_cpu_supports, which also
 * checks that the OS saves YMM state). cg_avx2_install() replaces entries of a copy of the
 * reference table with the AVX2 kernels; entries it leaves alone keep the reference kernel.
 * Files with AVX2 code are compiled with -mavx2 -mfma and are only ever called through
 * the table after the cpuid check, so the library still runs on older processors.
 */
#ifndef CG_KERNELS_CPU_AVX2_H
#define CG_KERNELS_CPU_AVX2_H

#include "core/backend.h"

int cg_cpu_has_avx2(void);
void cg_avx2_install(cg_backend *table);

#endif
