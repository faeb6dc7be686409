#include "engine/numerics.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"
#include "kernels/cpu/parallel.h"

// OpenBLAS's own query; weak, so that another BLAS still links (then null).
extern "C" char* openblas_get_corename(void) __attribute__((weak));

namespace bissl {

namespace {
Numerics g_mode = Numerics::Default;

bool is_haswell_core() {
  std::string c = blas_core();
  for (auto& ch : c) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return c == "haswell";
}
}  // namespace

Numerics parse_numerics(const std::string& s) {
  if (s == "default") return Numerics::Default;
  if (s == "portable") return Numerics::Portable;
  throw Error(str("numerics: expected default or portable, found '", s, "'"));
}

const char* numerics_name(Numerics m) { return m == Numerics::Portable ? "portable" : "default"; }

std::string blas_core() {
  if (!openblas_get_corename) return "unknown";
  const char* c = openblas_get_corename();
  return c ? std::string(c) : "unknown";
}

void set_numerics(Numerics m) {
  if (m == Numerics::Portable) {
    BISSL_CHECK(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
                "numerics = portable: expected a CPU with AVX2 and FMA (OpenBLAS's Haswell kernels), found one "
                "without");
    BISSL_CHECK(is_haswell_core(), "numerics = portable: expected OpenBLAS running its Haswell kernels, found '",
                blas_core(), "' (start the process with OPENBLAS_CORETYPE=Haswell; the bissl tools do so themselves)");
  }
  g_mode = m;
  cpu::portable_numerics.store(m == Numerics::Portable);
}

Numerics numerics() { return g_mode; }

void enter_numerics(Numerics m, char** argv) {
  if (m == Numerics::Portable && !is_haswell_core() && !std::getenv("BISSL_NUMERICS_REEXEC")) {
    // Once only: a second start still without Haswell kernels is set_numerics's error.
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    setenv("BISSL_NUMERICS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    throw Error(str("numerics = portable: re-executing with OPENBLAS_CORETYPE=Haswell failed: ", std::strerror(errno)));
  }
  set_numerics(m);
}

std::string numerics_summary() {
  return str(numerics_name(g_mode), " (OpenBLAS ", blas_core(), " kernels; ",
             g_mode == Numerics::Portable ? "fixed sums and GEMM tiles" : "sums and GEMMs split per thread", ")");
}

}  // namespace bissl
