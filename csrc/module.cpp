// module.cpp — the library's namespace and the Python module stub.
//
// Each op declares its schema in its own csrc/<op>.cpp with STABLE_TORCH_LIBRARY_FRAGMENT and
// each backend registers itself at the bottom of its own kernel file, so adding an op never
// edits this file. Importing `dualhead._C` runs the static registrations; the module itself is
// empty (as in pytorch/extension-cpp), built against Python's limited API (one abi3 binary for
// every CPython >= 3.10) and the LibTorch stable ABI (one binary for every torch >= 2.10).
#include <Python.h>

#include <string>

#include "host.h"

#ifndef DUALHEAD_CUDA_ARCHS
#define DUALHEAD_CUDA_ARCHS ""
#endif

namespace dualhead {

// What this binary was built with, for `dualhead info`; setup.py passes the arch list and the
// torch it was compiled against (any torch >= the target runs it).
std::string build_info() {
  return str("cuda_archs=", DUALHEAD_CUDA_ARCHS, ",built_with_torch=", TORCH_VERSION, ",target_torch=2.10");
}

}  // namespace dualhead

STABLE_TORCH_LIBRARY(dualhead, m) { m.def("build_info() -> str"); }

STABLE_TORCH_LIBRARY_IMPL(dualhead, CompositeExplicitAutograd, m) {
  m.impl("build_info", TORCH_BOX(&dualhead::build_info));
}

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "dualhead kernels (ops live in torch.ops.dualhead)", -1,
                                   nullptr};
  return PyModule_Create(&def);
}
}
