// module.cpp — the library's namespace and the Python module stub.
//
// Each op declares its schema in its own csrc/<op>.cpp with TORCH_LIBRARY_FRAGMENT and each
// backend registers itself at the bottom of its own kernel file, so adding an op never edits
// this file. Importing `dualhead._C` runs the static registrations; the module itself is empty
// (as in pytorch/extension-cpp), which keeps the extension free of pybind11 bindings.
#include <Python.h>
#include <torch/library.h>

#include <string>

#ifndef DUALHEAD_CUDA_ARCHS
#define DUALHEAD_CUDA_ARCHS ""
#endif

namespace dualhead {
// What this binary was built with, for `dualhead info`; setup.py passes the arch list.
std::string build_info() {
  return std::string("cuda_archs=") + DUALHEAD_CUDA_ARCHS;
}
}  // namespace dualhead

TORCH_LIBRARY(dualhead, m) {
  m.def("build_info() -> str", &dualhead::build_info);
}

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "dualhead kernels (ops live in torch.ops.dualhead)", -1, nullptr};
  return PyModule_Create(&def);
}
}
