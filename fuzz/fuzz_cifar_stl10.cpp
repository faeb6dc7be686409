// CIFAR-10 / CIFAR-100 and STL-10 binaries. Byte 0 picks the reader; for
// STL-10 bytes 1..4 say where the images file ends and the labels file begins.
#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] % 4;
  const uint8_t* p = data + 1;
  size_t n = size - 1;
  const std::string dir = fuzz::work_dir() + "/set" + std::to_string(which);
  fuzz::refused_or_read([&] {
    if (which == 0) {
      fuzz::write_file("set0/test_batch.bin", p, n);
      data::ImageSet s = data::load_cifar10(dir, false);
      s.validate();
    } else if (which == 1 || which == 2) {
      fuzz::write_file("set" + std::to_string(which) + "/test.bin", p, n);
      data::ImageSet s = data::load_cifar100(dir, false, which == 2);
      s.validate();
    } else {
      if (n < 4) return;
      size_t cut = (size_t(p[0]) | size_t(p[1]) << 8 | size_t(p[2]) << 16 | size_t(p[3]) << 24) % (n - 3);
      fuzz::write_file("set3/test_X.bin", p + 4, cut);
      fuzz::write_file("set3/test_y.bin", p + 4 + cut, n - 4 - cut);
      data::ImageSet s = data::load_stl10(dir, data::Stl10Split::Test);
      s.validate();
    }
  });
  return 0;
}
