// CUDA checks. Without a device they skip, loudly, so a green CPU run never
// hides that GPU checks did not run.
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/backend.h"

using namespace bissl;

TEST_SUITE("cuda") {
  TEST_CASE("device query") {
    std::printf("bissl backend: %s\n", backend_summary().c_str());
    if (!cuda_built()) {
      std::printf("SKIPPED: CUDA checks (this build has no CUDA backend)\n");
      return;
    }
    int n = cuda_device_count();
    if (n == 0) {
      std::printf("SKIPPED: CUDA checks (toolkit present, no GPU on this machine)\n");
      return;
    }
    CHECK(n > 0);
  }
}
