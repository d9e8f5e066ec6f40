/* The CPU emulator build of kernels/cuda/random.cu (see cuda_emu.h). */
#include "kernels/cuda/random.cu"
