// library.h — the op library that every schema and CUDA registration names. It is dualhead; the
// CPU execution layer of the CUDA kernels (csrc/cuda/emu) compiles the schema files and the CUDA
// backend a second time as the library dualhead_emu (-DDH_LIB=dualhead_emu), registered for CPU
// tensors, so the tests can run both side by side in one process.
#pragma once

#include <torch/csrc/stable/library.h>

#ifndef DH_LIB
#define DH_LIB dualhead
#endif
