// VOC 2007 annotations: the XML objects, names, difficult flags and parts,
// through the whole devkit reader (one image, its annotation the input).
#include <cstring>

#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string root = [] {
    fuzz::write_file("voc/VOC2007/ImageSets/Main/test.txt", "000001\n");
    // A PNG under a .jpg name: stb_image reads by content.
    fuzz::write_file("voc/VOC2007/JPEGImages/000001.jpg", fuzz::kTinyPng, sizeof fuzz::kTinyPng);
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
