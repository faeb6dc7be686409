#pragma once
// What this build and machine can run on.
#include <string>

namespace bissl {

bool cuda_built();            // compiled with the CUDA backend
int cuda_device_count();      // 0 when not built or no device
std::string backend_summary();  // one line for logs: "cpu (2 threads); cuda: ..."

}  // namespace bissl
