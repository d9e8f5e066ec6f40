/* The CPU emulator build of kernels/cuda/matmul.cu (see cuda_emu.h). */
#include "kernels/cuda/matmul.cu"
