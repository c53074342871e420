// assign_settings.h — the one list of dualhead::assign's settings (the schema's `float[] settings`):
// each head's HeadSettings, then the call's Convention and target eps (assign_core.h; the same
// names in dualhead/settings.py HeadSettings and dualhead/conventions.py Convention). Everything
// else follows from this list: the host code reads the values by these names
// (assign_args.h), and the Python layer packs them by the names that the op
// `assign_settings()` returns, checking that it knows every one (dualhead/conventions.py).
#pragma once

// X(name), in the order of the list
#define DH_ASSIGN_SETTINGS(X) \
  X(o2m_topk)                 \
  X(o2m_topk2)                \
  X(o2m_alpha)                \
  X(o2m_beta)                 \
  X(o2o_topk)                 \
  X(o2o_topk2)                \
  X(o2o_alpha)                \
  X(o2o_beta)                 \
  X(order)                    \
  X(conflict)                 \
  X(floor_below)              \
  X(floor_to)                 \
  X(round_trip)               \
  X(margin)                   \
  X(iou_type)                 \
  X(eps)

namespace dualhead {

enum AssignSetting : int {
#define DH_SETTING_ENUM(name) kSet_##name,
  DH_ASSIGN_SETTINGS(DH_SETTING_ENUM)
#undef DH_SETTING_ENUM
      kAssignSettingCount
};

// "o2m_topk,o2m_topk2,...": the names in order.
inline const char* assign_setting_names() {
#define DH_SETTING_NAME(name) #name ","
  static const char* const names = DH_ASSIGN_SETTINGS(DH_SETTING_NAME);
#undef DH_SETTING_NAME
  return names;
}

}  // namespace dualhead
