#pragma once
// The CPU's numerics mode: what makes a run's bits depend on the machine,
// and the mode that removes it (docs/performance.md, "Portable numerics").
//
// default   our sums cut into one chunk per OpenMP thread, OpenBLAS threading
//           each product itself (results depend on the thread count), and
//           OpenBLAS's kernels as it picks them for the CPU (results depend
//           on the CPU model: SkylakeX, Zen, Sandybridge ... kernels block
//           and round differently); f32 convolutions through oneDNN, whose
//           kernels are picked by the CPU's ISA (AVX-512, AVX2 ...) and split
//           by the thread count (kernels/cpu/conv_onednn.h).
// portable  our sums cut into chunks fixed by the problem size alone, added
//           in order; every GEMM cut into tiles fixed by its shape, each a
//           single-threaded OpenBLAS call (OpenBLAS's own threads split a
//           product by their number, and its edge kernels round otherwise),
//           convolutions as im2col + those GEMMs (never oneDNN);
//           and OpenBLAS running its Haswell kernels on any CPU
//           (OPENBLAS_CORETYPE=Haswell; the CPU needs AVX2 and FMA): the same
//           bits on any x86-64 machine with AVX2 for the same binary and
//           libraries, whatever the thread count.
// Our own code is compiled for baseline x86-64 (no -march, so no FMA
// contraction), and the loader's augmentations depend only on (seed,
// epoch, sample), so these two are the CPU-dependent parts.
#include <string>

namespace bissl {

enum class Numerics { Default, Portable };

// "default" | "portable"; an Error naming the value otherwise.
Numerics parse_numerics(const std::string& s);
const char* numerics_name(Numerics m);

// The process's mode (Default until set). Setting Portable checks that
// OpenBLAS runs its Haswell kernels and the CPU has AVX2 and FMA: an Error
// saying what to do otherwise.
void set_numerics(Numerics m);
Numerics numerics();

// For executables: Portable while OpenBLAS runs other kernels re-executes
// this process (argv, /proc/self/exe) with OPENBLAS_CORETYPE=Haswell, which
// OpenBLAS reads only when it loads; otherwise set_numerics(m).
void enter_numerics(Numerics m, char** argv);

// OpenBLAS's kernel family as it reports it ("Haswell", "Zen", ...);
// "unknown" when the BLAS is not OpenBLAS.
std::string blas_core();
// One line for reports: "portable (OpenBLAS Haswell kernels; fixed sums and GEMM tiles)".
std::string numerics_summary();

}  // namespace bissl
