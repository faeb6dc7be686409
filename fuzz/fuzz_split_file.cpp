// Split files ("path label" lines, or CSV with a header) and class-names
// files: paths, labels by index or name, repeats, missing images, blank and
// comment lines. Byte 0 picks: with or without a class-names file, or the
// input as the class-names file itself.
#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const std::string root = [] {
    for (const char* f : {"a.png", "b.jpg", "dir/c.png", "dir/d e.png", "x,y.png"}) fuzz::write_file(std::string("split/") + f, "");
    return fuzz::work_dir() + "/split";
  }();
  const std::string path = fuzz::write_file("split/list.txt", data + 1, size - 1);
  fuzz::refused_or_read([&] {
    switch (data[0] % 3) {
      case 0: {
        data::ImageList l = data::read_split_file(path, root);
        if (l.files.size() != l.labels.size() || l.names.size() != l.files.size()) std::abort();
        for (int64_t y : l.labels)
          if (y < 0 || y >= int64_t(l.class_names.size())) std::abort();
        break;
      }
      case 1: {
        data::ImageList l = data::read_split_file(path, root, {"cat", "dog", "0", "12"});
        for (int64_t y : l.labels)
          if (y < 0 || y >= 4) std::abort();
        break;
      }
      default:
        data::read_class_names(path);
    }
  });
  return 0;
}
