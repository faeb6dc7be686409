// The image decode path: stb_image (PNG, JPEG, BMP, GIF, TGA, PNM) with the
// pixel limit from the header, then our resampling to one size and layout,
// in memory and lazily, then an augmented view. Byte 0 picks channels and
// fit.
#include "data/augment.h"
#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string path = fuzz::write_file("class/input.img", data + 1, size - 1);
  data::ImageList list;
  list.files = {path};
  list.names = {"class/input.img"};
  list.labels = {0};
  list.class_names = {"class"};
  list.source = "fuzz";
  data::DecodeOptions o;
  o.channels = (mode & 3) == 0 ? 0 : (mode & 1) ? 1 : 3;
  o.fit = (mode & 4) ? data::Fit::ShorterCrop : (mode & 8) ? data::Fit::Squash : data::Fit::Exact;
  o.height = o.width = o.fit == data::Fit::Exact ? 0 : 16;
  o.interp = (mode & 16) ? data::Interp::Bicubic : data::Interp::Bilinear;
  o.threads = 1;
  o.max_pixels = 1 << 20;  // 1 Mpx: a larger image is refused from its header (keeps runs fast)
  o.lazy = mode & 32;
  fuzz::refused_or_read([&] {
    data::ImageSet s = data::decode_image_list(list, o);
    std::vector<uint8_t> px(size_t(s.image_bytes()));
    s.read(0, px.data());
    data::ViewConfig v = data::eval_view(8, s.c);
    data::SampleRng rng(1, 0, 0);
    std::vector<float> out(size_t(8 * 8 * s.c));
    data::apply_view(v, px.data(), s.h, s.w, s.c, rng, out.data());
  });
  return 0;
}
