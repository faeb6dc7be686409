// VOC 2007 annotations: the XML objects, names, difficult flags and parts,
// through the whole devkit reader (one image, its annotation the input).
#include <cstring>

#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

namespace {
// A 2x2 grey PNG (written once).
const uint8_t kPng[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
                        0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57,
                        0xdd, 0x52, 0xf8, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
                        0x60, 0x60, 0x60, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0xa5, 0xf6, 0x45, 0x40, 0x00, 0x00,
                        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string root = [] {
    fuzz::write_file("voc/VOC2007/ImageSets/Main/test.txt", "000001\n");
    fuzz::write_file("voc/VOC2007/JPEGImages/000001.jpg", kPng, sizeof kPng);  // stb_image reads by content
    return fuzz::work_dir() + "/voc";
  }();
  fuzz::write_file("voc/VOC2007/Annotations/000001.xml", data, size);
  fuzz::refused_or_read([&] {
    data::VocOptions o;
    o.height = o.width = 4;
    o.threads = 1;
    data::ImageSet s = data::load_voc2007(root, "test", o);
    s.validate();
  });
  fuzz::refused_or_read([&] { data::parse_voc_objects(std::string(reinterpret_cast<const char*>(data), size), "fuzz"); });
  return 0;
}
