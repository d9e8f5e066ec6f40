/* The CPU emulator build of kernels/cuda/pointwise.cu (see cuda_emu.h). */
#include "kernels/cuda/pointwise.cu"
