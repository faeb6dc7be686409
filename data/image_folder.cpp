// Image folders: root/<class>/<image>, decoded by stb_image.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "data/datasets.h"
#include "data/file_io.h"
#include "engine/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace bissl::data {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return s;
}

using Decoded = DecodedImage;
Decoded decode(const std::string& path, int64_t channels) { return decode_image_file(path, channels); }

}  // namespace

DecodedImage decode_image_file(const std::string& path, int64_t channels) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  BISSL_CHECK(!bytes.empty(), path, ": expected an image, found an empty file");
  BISSL_CHECK(bytes.size() < size_t(1) << 31, path, ": expected an image below 2 GiB, found ", bytes.size(), " bytes");
  int w = 0, h = 0, file_c = 0;
  uint8_t* p = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &file_c, int(channels));
  BISSL_CHECK(p, path, ": cannot decode the image (stb_image: ", stbi_failure_reason(), ")");
  Decoded d;
  d.h = h;
  d.w = w;
  d.px.assign(p, p + size_t(h) * size_t(w) * size_t(channels));
  stbi_image_free(p);
  return d;
}

ImageSet load_image_folder(const std::string& root, const ImageFolderOptions& opts) {
  BISSL_CHECK(opts.channels == 1 || opts.channels == 3, "image folder ", root, ": expected 1 or 3 channels, found ",
              opts.channels);
  BISSL_CHECK(!opts.resize || (opts.height > 0 && opts.width > 0), "image folder ", root,
              ": resizing needs a positive height and width, found ", opts.height, "x", opts.width);
  std::error_code ec;
  BISSL_CHECK(fs::is_directory(root, ec), root, ": expected a directory with one sub-folder per class, found none");

  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  BISSL_CHECK(!classes.empty(), root, ": expected one sub-folder per class, found no sub-folders");

  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (size_t k = 0; k < classes.size(); ++k) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::directory_iterator(fs::path(root) / classes[k])) {
      if (!e.is_regular_file()) continue;
      const std::string ext = lower(e.path().extension().string());
      if (std::find(opts.extensions.begin(), opts.extensions.end(), ext) != opts.extensions.end())
        in_class.push_back(e.path().string());
    }
    BISSL_CHECK(!in_class.empty(), root, "/", classes[k], ": expected at least one image in the class folder, found none");
    std::sort(in_class.begin(), in_class.end());
    for (auto& f : in_class) {
      files.push_back(f);
      labels.push_back(int64_t(k));
    }
  }

  ImageSet s;
  s.n = int64_t(files.size());
  s.c = opts.channels;
  s.num_classes = int64_t(classes.size());
  s.class_names = classes;
  s.labels = labels;
  s.source = str("image folder ", root);

  // The output size: fixed by the options, or by the first image.
  Decoded first;
  if (opts.resize || (opts.height > 0 && opts.width > 0)) {
    s.h = opts.height;
    s.w = opts.width;
  } else {
    first = decode(files[0], s.c);
    s.h = first.h;
    s.w = first.w;
  }
  s.pixels.resize(size_t(s.n * s.image_bytes()));

  auto place = [&](int64_t i, Decoded d) {
    if (opts.resize) {
      if (d.h != s.h || d.w != s.w) {
        Image r = resize(from_uint8(d.px.data(), d.h, d.w, s.c), s.h, s.w, opts.interp);
        to_uint8(r, s.image(i));
        return;
      }
    } else {
      BISSL_CHECK(d.h == s.h && d.w == s.w, files[i], ": expected an image of ", s.h, "x", s.w,
                  (opts.height > 0 ? " (the required size)" : str(" (the size of ", files[0], ")")), ", found ", d.h,
                  "x", d.w);
    }
    std::copy(d.px.begin(), d.px.end(), s.image(i));
  };

  int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, s.n));
  std::vector<std::string> errors(files.size());
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < s.n;) {
      try {
        if (i == 0 && !first.px.empty())
          place(0, std::move(first));
        else
          place(i, decode(files[i], s.c));
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  // The first failing file in order, so the message does not depend on timing.
  for (const auto& e : errors)
    if (!e.empty()) throw Error(e);
  return s;
}

}  // namespace bissl::data
