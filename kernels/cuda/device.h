#pragma once
// CUDA device queries. Compiled only when the toolkit is found; callers go
// through engine/backend.h, which answers "no CUDA" in CPU-only builds.
#include <string>

namespace bissl::cuda {

// Number of usable devices (0 when the driver or a GPU is missing: never throws).
int device_count();
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" or the reason there is none.
std::string device_summary(int device = 0);
// CUDA runtime version, e.g. 13000.
int runtime_version();

}  // namespace bissl::cuda
