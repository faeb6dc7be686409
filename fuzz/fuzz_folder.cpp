// A dataset folder (task.dataset = "folder"): the listing of
// root/{train,test,val}/<class>/** with nested folders, odd names, empty
// classes, files that are not images, unreadable images, symbolic links
// (to files, to folders, dangling, in loops), then the task's splits,
// decoded in memory or lazily, and every image read.
//
// The input is a tree, one entry per line, built afresh under this
// process's work folder:
//   p<path>            a small PNG         g<path>|<bytes>   a file of these bytes
//   d<path>            a folder            l<path>|<target>  a symbolic link
// Paths stay inside the tree (relative, no "." or ".." parts), and so do
// link targets (relative, ".." allowed while they stay inside: links to a
// folder above make loops); at most 48 entries. Byte 0 picks the settings.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "fuzz/common.h"
#include "tools/stages/task.h"

using namespace bissl;
namespace fs = std::filesystem;

namespace {

// A path that stays inside the tree: relative, no "." / ".." parts, no NUL.
bool inside(const std::string& p) {
  if (p.empty() || p.size() > 120 || p[0] == '/' || p.find('\0') != std::string::npos) return false;
  size_t start = 0;
  int depth = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    const std::string part = p.substr(start, end - start);
    if (part == "." || part == ".." || ++depth > 6) return false;
    start = end + 1;
  }
  return true;
}

void build_tree(const std::string& root, const std::string& text) {
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root, ec);
  size_t pos = 0;
  for (int n = 0; n < 48 && pos < text.size(); ++n) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 2) continue;
    const char kind = line[0];
    const size_t bar = line.find('|');
    const std::string path = line.substr(1, bar == std::string::npos ? std::string::npos : bar - 1);
    const std::string rest = bar == std::string::npos ? "" : line.substr(bar + 1);
    if (!inside(path)) continue;
    const fs::path full = fs::path(root) / path;
    fs::create_directories(full.parent_path(), ec);
    if (kind == 'd') {
      fs::create_directories(full, ec);
    } else if (kind == 'p' || kind == 'g') {
      std::FILE* f = std::fopen(full.c_str(), "wb");
      if (!f) continue;  // a folder of that name already, say
      if (kind == 'p') std::fwrite(fuzz::kTinyPng, 1, sizeof fuzz::kTinyPng, f);
      else if (!rest.empty()) std::fwrite(rest.data(), 1, rest.size(), f);
      std::fclose(f);
    } else if (kind == 'l' && !rest.empty() && rest.size() <= 120 && rest[0] != '/' &&
               rest.find('\0') == std::string::npos) {
      // Relative to the link's folder; may dangle or loop, but not leave the tree.
      const fs::path to = (full.parent_path() / rest).lexically_normal();
      const std::string r = fs::path(root).lexically_normal().string();
      if (to.string().compare(0, r.size(), r) == 0) fs::create_symlink(rest, full, ec);
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string root = fuzz::work_dir() + "/folder";
  build_tree(root, std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  stages::TaskConfig t;
  t.dataset = "folder";
  t.root = root;
  t.image_size = 2;
  t.load_size = (mode & 1) ? 3 : 0;
  t.channels = (mode & 2) ? 1 : (mode & 4) ? 3 : 0;
  t.folder_order = (mode & 8) ? "name" : "class";
  t.skip_bad_images = mode & 16;
  t.lazy = mode & 32;
  t.val_fraction = 0.5;
  t.max_image_pixels = 1 << 16;
  fuzz::refused_or_read([&] {
    stages::Task task = stages::load_task(t);
    (void)task.describe();
    for (const auto& set : {task.train, task.val, task.test}) {
      set->validate();
      std::vector<uint8_t> px(size_t(set->image_bytes()));
      for (int64_t i = 0; i < set->n; ++i) set->read(i, px.data());  // a lazy set decodes here
    }
  });
  return 0;
}
