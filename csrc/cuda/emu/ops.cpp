// ops.cpp — what the emulation library reports to the tests, as ops of its own namespace:
// torch.ops.dualhead_emu.launch_counts() ("kernel=count;..." since the library was loaded) and
// host_syncs() (cudaStreamSynchronize calls: the host waiting for the "device").
#include <torch/csrc/stable/library.h>

#include <cstdint>
#include <string>

namespace {

std::string launch_counts() { return dh_emu::launch_counts(); }
int64_t host_syncs() { return dh_emu::host_syncs(); }

}  // namespace

STABLE_TORCH_LIBRARY_FRAGMENT(dualhead_emu, m) {
  m.def("launch_counts() -> str");
  m.def("host_syncs() -> int");
}

STABLE_TORCH_LIBRARY_IMPL(dualhead_emu, CompositeExplicitAutograd, m) {
  m.impl("launch_counts", TORCH_BOX(&launch_counts));
  m.impl("host_syncs", TORCH_BOX(&host_syncs));
}
