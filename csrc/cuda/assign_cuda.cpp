// CUDA backend of dualhead::assign: checks, workspace, launches, and the device-check errors.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "../assign_args.h"
#include "cuda_host.h"
#include "assign_launch.h"
#include "anchor_grid_launch.h"

namespace dualhead {

DeviceErrors* device_errors(int device) {
  static std::mutex mu;
  static std::map<int, DeviceErrors*> records;
  std::lock_guard<std::mutex> lock(mu);
  DeviceErrors*& r = records[device];
  if (r == nullptr) {  // the first call on the device (warm-up, before any graph capture)
    void* h = nullptr;
    cuda_check(cudaHostAlloc(&h, sizeof(DeviceErrors), cudaHostAllocMapped | cudaHostAllocPortable),
               "allocating the device-check error record");
    std::memset(h, 0, sizeof(DeviceErrors));
    r = static_cast<DeviceErrors*>(h);
  }
  return r;
}

namespace {

// The message of the error a device check recorded, clearing the record; "" when none. The code
// is read with acquire order: the details the kernel wrote before publishing it are then seen
// (the host may be weakly ordered, e.g. aarch64).
std::string take_error(DeviceErrors* e) {
  const int code = __atomic_load_n(&e->code, __ATOMIC_ACQUIRE);
  if (code <= 0) return "";  // none, or still being written (then the next call sees it)
  const float v[4] = {e->v[0], e->v[1], e->v[2], e->v[3]};
  std::string msg = input_error_message(code, e->index, e->label, v, e->C, e->M);
  __atomic_store_n(&e->code, 0, __ATOMIC_RELEASE);
  return msg;
}

// DUALHEAD_SYNC_CHECKS=1: wait for the device checks within the call and raise there (a sync
// per call; for debugging, and what the CUDA bad-input tests use). Read per call (a getenv).
bool sync_checks() {
  const char* e = std::getenv("DUALHEAD_SYNC_CHECKS");
  return e != nullptr && e[0] == '1';
}

void raise_pending(DeviceErrors* e, int device, bool this_call) {
  const std::string msg = take_error(e);
  DH_CHECK_VALUE(msg.empty(), msg,
                 this_call ? ""
                           : str(" (found on cuda:", device,
                                 " by the device-side check of an earlier dualhead "
                                 "assign call: such errors are raised by the next call on the device, or by "
                                 "dualhead.ops.check_errors(); DUALHEAD_SYNC_CHECKS=1 raises them within the "
                                 "call, at the cost of a sync)"));
}

int score_dtype(const Tensor& t) {
  switch (t.scalar_type()) {
    case ScalarType::Float:
      return 0;
    case ScalarType::Half:
      return 1;
    case ScalarType::BFloat16:
      return 2;
    case ScalarType::Double:
      return 3;
    default:
      DH_CHECK(false, "pd_scores must be fp32, fp16, bf16 or fp64, got ", dtype(t));
  }
  return 0;
}

AssignResult assign_cuda(Tensor scores, Tensor bboxes, std::optional<Tensor> scores2, std::optional<Tensor> bboxes2,
                         Tensor anc_points, Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt,
                         std::vector<double> settings, bool with_stats) {
  const int device = scores.get_device_index();
  const CudaGuard guard(device);
  DeviceErrors* errors = device_errors(device);
  raise_pending(errors, device, false);
  AssignCall call =
      prepare_assign(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt, settings, with_stats);
  AssignParams& p = call.p;
  if (p.B * p.N == 0 || p.M == 0) {
    fill_empty(call);
    return call.result();
  }
  // All scratch in one allocation (each allocation costs a few microseconds of host time, and
  // the whole call's target is W1 in 100 us: docs/contract.md §5), carved into 8-byte-aligned pieces. The first pieces
  // start at zero (one memset): the per-(head, image) claimed counts and per-ground-truth member counts, then the
  // AssignCall workspace, whose first 3*H*B*N slots (claims and keys) start at zero; everything else is written before
  // it is read.
  const int64_t HB = p.H * p.B;
  AssignScratch s{};
  s.kmax = tile_path(p) ? 0 : std::max(p.head[0].topk, p.H > 1 ? p.head[1].topk : 0);  // lists of the fallback only
  s.k2 = std::max(p.head[0].topk2, p.H > 1 ? p.head[1].topk2 : 0);
  int64_t slots = 0;
  const auto piece = [&slots](int64_t count, int64_t elem_bytes) {
    const int64_t at = slots;
    slots += (count * elem_bytes + 7) / 8;
    return at;
  };
  const int64_t o_nbig = piece(1, 4), o_ncl = piece(HB, 4), o_count = piece(HB * p.M, 4);
  const int64_t o_ws = piece(call.workspace_size(), 8);
  const int64_t o_vals = piece(p.B * p.M * 2 * s.kmax, 4), o_idxs = piece(p.B * p.M * 2 * s.kmax, 8);
  const int64_t o_mf = piece(HB * p.N, 4), o_of = piece(HB * p.N, 4), o_ga = piece(HB * p.N, 8);
  const int64_t o_claimed = piece(HB * p.N, 4), o_cursor = piece(HB * p.M, 4);
  const int64_t o_mg = piece(HB * p.M, 4), o_og = piece(HB * p.M, 4);
  const int64_t o_lv = piece(HB * p.M * s.k2, 4), o_li = piece(HB * p.M * s.k2, 8);
  const int64_t o_mask = piece(p.B * p.M, 1), o_big = piece(p.B * p.M, 8);
  const int64_t o_grid = piece(1, sizeof(AnchorGrid));
  const Tensor scratch = empty({slots}, ScalarType::Long, call.boxes0);
  int64_t* base = ptr<int64_t>(scratch);
  const auto f32 = [base](int64_t o) { return reinterpret_cast<float*>(base + o); };
  const auto i32 = [base](int64_t o) { return reinterpret_cast<int*>(base + o); };
  call.set_workspace(base + o_ws);
  s.vals = f32(o_vals), s.idxs = base + o_idxs;
  s.anchor_metric = f32(o_mf), s.anchor_overlap = f32(o_of), s.anchor_gt = base + o_ga;
  s.claimed = i32(o_claimed), s.n_claimed = i32(o_ncl);
  s.count = i32(o_count), s.cursor = i32(o_cursor);
  s.gt_max_metric = f32(o_mg), s.gt_max_overlap = f32(o_og);
  s.topk2_vals = f32(o_lv), s.topk2_idxs = base + o_li;
  s.big_rows = base + o_big, s.n_big = i32(o_nbig);
  s.mask_ok = reinterpret_cast<bool*>(base + o_mask), s.errors = errors;
  s.grid = reinterpret_cast<AnchorGrid*>(base + o_grid);
  p.grid = s.grid;
  if (call.stats) {
    s.pick = ptr<int64_t>(call.pick), s.rank = ptr<int64_t>(call.rank), s.gap = ptr<float>(call.gap);
  }
  const cudaStream_t stream = current_stream(device);
  cuda_check(cudaMemsetAsync(base, 0, (o_ws + 3 * call.hbn()) * sizeof(int64_t), stream), "zeroing the workspace");
  launch_anchor_grid(p.anc, p.N, s.grid, stream);  // this call's grid, from its own anchors
  launch_check("anchor grid kernels");
  launch_value_check(p, s, stream);  // reads mask_gt, writes mask_ok: what every later kernel reads
  launch_check("check_kernel");
  p.mask = s.mask_ok;
  launch_assign(p, ptr<const void>(call.scores0), ptr<const void>(call.scores1), score_dtype(call.scores0), s, stream);
  launch_check("assign kernels");
  if (sync_checks()) {
    cuda_check(cudaStreamSynchronize(stream), "DUALHEAD_SYNC_CHECKS");
    raise_pending(errors, device, true);
  }
  return call.result();
}

// dualhead::take_cuda_error: the pending device-check error of a device ("" when none), cleared.
std::string take_cuda_error(int64_t device) { return take_error(device_errors(static_cast<int>(device))); }

}  // namespace

// CUDA-only, so declared here rather than in csrc/assign.cpp (no tensor argument: registered
// for CompositeExplicitAutograd, which serves every backend); dualhead.ops.check_errors() calls it.
STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) { m.def("take_cuda_error(int device) -> str"); }

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, CompositeExplicitAutograd, m) {
  m.impl("take_cuda_error", TORCH_BOX(&take_cuda_error));
}

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, DH_CUDA_BACKEND, m) { m.impl("assign", TORCH_BOX(&assign_cuda)); }

}  // namespace dualhead
