/* The CPU emulator build of kernels/cuda/sort.cu (see cuda_emu.h). */
#include "kernels/cuda/sort.cu"
