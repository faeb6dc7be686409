// Image folders: root/<class>/<image>, decoded by stb_image.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unordered_map>

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

// 89478485 -> "89,478,485".
std::string with_commas(int64_t v) {
  std::string d = std::to_string(v), r;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) r += ',';
    r += d[i];
  }
  return r;
}

// Without a class-names file a split file's labels are class indices and
// the classes 0..the largest: the largest allowed (ImageNet-21k has 21 841).
constexpr int64_t kMaxClassIndex = 1 << 20;

// Bytes of an image file read for its header (size, channels): enough for
// any real header, EXIF thumbnails and ICC profiles included.
constexpr int64_t kHeaderBytes = 256 << 10;

// stb_image 2.27 (Debian 12's) builds a JPEG Huffman table from a DHT
// segment's 16 code counts without checking that they sum to at most 256:
// a larger sum writes past the table (found by fuzz_image; upstream 2.28
// checks it). And a scan may name a Huffman table no DHT segment defined:
// stb_image then decodes with a table it never initialised, reading symbols
// at offsets taken from whatever memory it was given (found by fuzz_image:
// an index of 1 062 281 548 into a 256-entry table). Walks the markers as
// stb_image does and refuses both before stb_image sees the file: every
// table a scan decodes with (baseline: DC and AC; progressive: DC in a first
// DC scan, AC in an AC scan) must be defined before it. Not a JPEG, or a
// structure stb_image will refuse anyway: left to stb_image.
void check_jpeg_tables(const std::string& path, const uint8_t* p, size_t n) {
  // stb_image takes FF (FF...) D8 as the start: its marker reader skips fill bytes.
  if (n < 4 || p[0] != 0xFF) return;
  size_t i = 1;
  while (i < n && p[i] == 0xFF) ++i;
  if (i >= n || p[i] != 0xD8) return;
  ++i;
  auto at = [&](size_t k) -> unsigned { return k < n ? p[k] : 0u; };  // stb_image reads 0 past the end
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool progressive = false;
  while (i + 1 < n) {
    if (p[i] != 0xFF) {  // entropy-coded data between markers
      ++i;
      continue;
    }
    const unsigned m = p[i + 1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {  // stuffed byte, TEM, RSTn, SOI: no length
      i += 2;
      continue;
    }
    if (m == 0xD9) return;  // EOI
    const size_t len = (at(i + 2) << 8) | at(i + 3);
    if (m == 0xC4) {  // DHT: tables of (class/id, 16 counts, symbols) while the length lasts
      int64_t left = int64_t(len) - 2;
      size_t q = i + 4;
      while (left > 0) {
        unsigned count = 0;
        for (size_t k = 1; k <= 16; ++k) count += at(q + k);
        BISSL_CHECK(count <= 256, path, ": expected a JPEG Huffman table of at most 256 codes, found ", count,
                    " (corrupt or hostile)");
        const unsigned table_class = at(q) >> 4, id = at(q) & 15;
        if (table_class <= 1 && id <= 3) defined[table_class][id] = true;
        q += 17 + count;
        left -= 17 + int64_t(count);
      }
    }
    if (m == 0xC0 || m == 0xC1 || m == 0xC2) progressive = m == 0xC2;  // the frame types stb_image reads
    if (m == 0xDA) {  // SOS: components (id, DC table << 4 | AC table), then Ss, Se, Ah << 4 | Al
      const unsigned components = at(i + 4), ss = at(i + 5 + 2 * components), ah = at(i + 7 + 2 * components) >> 4;
      for (unsigned k = 0; k < components && k < 4; ++k) {
        const unsigned dc = at(i + 6 + 2 * k) >> 4, ac = at(i + 6 + 2 * k) & 15;
        if (dc > 3 || ac > 3) continue;  // stb_image refuses it
        const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
        BISSL_CHECK(!uses_dc || defined[0][dc], path, ": expected the JPEG Huffman table DC ", dc,
                    " to be defined before the scan that uses it, found none (corrupt or hostile)");
        BISSL_CHECK(!uses_ac || defined[1][ac], path, ": expected the JPEG Huffman table AC ", ac,
                    " to be defined before the scan that uses it, found none (corrupt or hostile)");
      }
    }
    i += 2 + len;
  }
}

// A binary PNM header (P5 grey, P6 RGB) read as stb_image 2.27 reads it:
// three numbers (width, height, maximum value) after whitespace and #
// comments, each ended by the character after its digits, which stb_image
// consumes: the pixel data starts after it.
struct PnmHeader {
  int channels = 0;              // 0: not a binary PNM
  int64_t value[3] = {0, 0, 0};  // the first 18 digits of each
  size_t digits[3] = {0, 0, 0};
  size_t data_start = 0;
};
PnmHeader read_pnm_header(const uint8_t* p, size_t n) {
  PnmHeader r;
  if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return r;
  r.channels = p[1] == '5' ? 1 : 3;
  size_t i = 2;
  auto space = [](uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  for (int field = 0; field < 3; ++field) {
    for (;;) {  // whitespace and # comments, as stbi__pnm_skip_whitespace
      while (i < n && space(p[i])) ++i;
      if (i >= n || p[i] != '#') break;
      while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
    }
    while (i < n && p[i] >= '0' && p[i] <= '9') {
      if (r.digits[field] < 18) r.value[field] = r.value[field] * 10 + (p[i] - '0');
      ++i, ++r.digits[field];
    }
  }
  r.data_start = i + 1;
  return r;
}

// stb_image 2.27 reads a PNM header's width, height and maximum value into
// an int, digit after digit, without an overflow check, and mishandles
// 16-bit files (both found by fuzz_image). Refuses any number of more than
// 9 digits (a real one is far smaller) and a maximum value above 255.
void check_pnm_header(const std::string& path, const uint8_t* p, size_t n) {
  const PnmHeader h = read_pnm_header(p, n);
  if (!h.channels) return;
  for (size_t digits : h.digits)
    BISSL_CHECK(digits <= 9, path, ": expected a PNM header number of at most 9 digits, found one of ", digits,
                " (corrupt or hostile)");
  // 16-bit PNM: stb_image 2.27 converts its channels with the 8-bit
  // routine and then reads past the buffer (found by fuzz_image).
  BISSL_CHECK(h.value[2] <= 255, path, ": expected an 8-bit PNM (maximum value at most 255), found ", h.value[2],
              " (16-bit PNM files are not read)");
}

// Both checks above, on the bytes of an image file (or its first part).
void check_for_stb(const std::string& path, const uint8_t* p, size_t n) {
  check_jpeg_tables(path, p, n);
  check_pnm_header(path, p, n);
}

// stb_image 2.27 grows its buffer for a PNG's IDAT data to what each chunk
// *declares* before reading it: a 99-byte file declaring a 2 GB chunk had
// it allocate 2 GiB (found by fuzz_image). On a whole file, every chunk up
// to IEND must fit in the bytes that follow its header. A file that ends
// early is left to stb_image, which refuses it.
void check_png_chunks(const std::string& path, const uint8_t* p, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n < 8 || std::memcmp(p, sig, 8) != 0) return;
  size_t pos = 8;
  while (pos + 8 <= n) {
    const uint64_t len = uint64_t(p[pos]) << 24 | uint64_t(p[pos + 1]) << 16 | uint64_t(p[pos + 2]) << 8 | p[pos + 3];
    std::string type;
    for (size_t k = 4; k < 8; ++k) {
      const uint8_t ch = p[pos + k];
      const char* hex = "0123456789abcdef";
      type += std::isalpha(ch) ? std::string(1, char(ch)) : str("\\x", hex[ch >> 4], hex[ch & 15]);
    }
    const uint64_t left = n - pos - 8;  // the chunk's data and CRC must follow
    BISSL_CHECK(len + 4 <= left, path, ": cannot decode the image: its PNG chunk '", type, "' at byte ", pos,
                " declares ", len, " bytes, more than the file holds after it (", left >= 4 ? left - 4 : 0,
                "): truncated or hostile");
    if (type == "IEND") return;
    pos += 12 + size_t(len);
  }
}

// stb_image 2.27 decodes an uncompressed image whose pixel data is cut
// short without an error: a BMP's missing pixels and a 16-bit TGA's read as
// zeros, while a PNM's and an 8- / 24- / 32-bit TGA's are left as the
// allocator found them (whatever the heap held, in the image). On a whole
// file, after check_for_stb: the pixel data its header declares must fit in
// what follows the header (a lower bound: palettes and gaps not counted).
// Compressed formats and structures stb_image refuses are left to it; their
// memory is held by the pixel limit.
void check_raw_pixels(const std::string& path, const uint8_t* p, size_t n) {
  auto u16 = [&](size_t i) { return uint32_t(p[i]) | uint32_t(p[i + 1]) << 8; };
  auto u32 = [&](size_t i) { return u16(i) | u16(i + 2) << 16; };
  auto product = [](int64_t a, int64_t b) {  // saturating: a header may declare anything
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
  };
  auto need = [&](const char* format, int64_t w, int64_t h, int64_t bytes, uint64_t start) {
    const uint64_t have = n > start ? n - start : 0;
    BISSL_CHECK(uint64_t(bytes) <= have, path, ": cannot decode the image: its ", format, " header declares ", w,
                "x", h, " pixels, ", with_commas(bytes), " bytes of pixel data, more than the file holds after its ",
                "header (", with_commas(int64_t(have)), "): truncated or hostile");
  };
  if (n >= 26 && p[0] == 'B' && p[1] == 'M') {
    // BMP: a 14-byte file header, an info header of one of the sizes
    // stb_image reads, rows padded to 4 bytes; compression 0 (none) or 3
    // (bit fields) only.
    const uint32_t hsz = u32(14);
    int64_t w = 0, h = 0, bits = 0;
    if (hsz == 12) {
      w = u16(18), h = u16(20), bits = u16(24);
    } else if ((hsz == 40 || hsz == 56 || hsz == 108 || hsz == 124) && n >= 34) {
      if (u32(30) != 0 && u32(30) != 3) return;
      w = int32_t(u32(18)), h = int32_t(u32(22)), bits = u16(28);
    } else {
      return;
    }
    if (w <= 0 || h == 0 || bits == 0) return;
    const int64_t rows = h < 0 ? -h : h;  // negative: top-down rows
    need("BMP", w, rows, product((w * bits + 31) / 32 * 4, rows), 14 + uint64_t(hsz));
    return;
  }
  const PnmHeader pnm = read_pnm_header(p, n);
  if (pnm.channels) {
    const int64_t w = pnm.value[0], h = pnm.value[1];  // at most 9 digits each (check_pnm_header)
    if (w > 0 && h > 0) need("PNM", w, h, product(w * h, pnm.channels), pnm.data_start);
    return;
  }
  // TGA, as stbi__tga_test recognises it (its second byte, 0 or 1, is no
  // other format's signature): uncompressed types 1 (palette), 2 (colour), 3
  // (grey) after the 18-byte header and the image ID.
  if (n >= 18 && p[1] <= 1 && p[2] >= 1 && p[2] <= 3) {
    const int type = p[2], bits = p[16];
    const int64_t w = u16(12), h = u16(14);
    auto one_of = [](int v, std::initializer_list<int> set) { return std::find(set.begin(), set.end(), v) != set.end(); };
    const bool palette = p[1] == 1;
    if (palette ? type != 1 || !one_of(p[7], {8, 15, 16, 24, 32}) || !one_of(bits, {8, 16}) : type == 1) return;
    if (!one_of(bits, {8, 15, 16, 24, 32}) || w < 1 || h < 1) return;
    need("TGA", w, h, w * h * ((bits + 7) / 8), 18 + uint64_t(p[0]));
  }
}

// What an image file's header declares (stb_image's info), after
// check_for_stb: from its first kHeaderBytes, or from the whole file when
// the header runs on beyond them (large EXIF / ICC segments). Errors name
// the file: empty, unreadable header, a size of 0.
struct ImageHeader {
  int w = 0, h = 0, c = 0;
};
ImageHeader image_header(const std::string& path) {
  std::vector<uint8_t> b = read_file_bytes(path, kHeaderBytes);
  BISSL_CHECK(!b.empty(), path, ": expected an image, found an empty file");
  ImageHeader r;
  auto info = [&] {
    check_for_stb(path, b.data(), b.size());
    return stbi_info_from_memory(b.data(), int(b.size()), &r.w, &r.h, &r.c) != 0;
  };
  bool ok = info();
  if (!ok && int64_t(b.size()) == kHeaderBytes) {
    b = read_file_bytes(path);
    BISSL_CHECK(b.size() < size_t(1) << 31, path, ": expected an image below 2 GiB, found ", b.size(), " bytes");
    ok = info();
  }
  if (!ok) {
    const char* why = stbi_failure_reason();
    throw Error(str(path, ": cannot read the image header (stb_image: ", why ? why : "unknown format", ")"));
  }
  BISSL_CHECK(r.w > 0 && r.h > 0, path, ": expected an image of at least 1x1 pixels, found ", r.w, "x", r.h);
  return r;
}

// The error of an image of h x w in a set that needs exactly its size.
Error size_error(const std::string& path, int64_t h, int64_t w, const ImageSet& s, const DecodeOptions& opts,
                 const std::string& first_path) {
  return Error(str(path, ": expected an image of ", s.h, "x", s.w,
                   (opts.height > 0 ? " (the required size)" : str(" (the size of ", first_path, ")")), ", found ", h,
                   "x", w));
}

// A decoded image into the set's size (s.h x s.w x s.c) as opts.fit says, at out.
void fit_decoded(const Decoded& d, const ImageSet& s, const DecodeOptions& opts, const std::string& path,
                 const std::string& first_path, uint8_t* out) {
  if (d.h != s.h || d.w != s.w) {
    if (opts.fit == Fit::Squash) {
      to_uint8(resize(from_uint8(d.px.data(), d.h, d.w, s.c), s.h, s.w, opts.interp), out);
      return;
    }
    if (opts.fit == Fit::ShorterCrop) {
      // The resampled image before its centre square, held to the same pixel
      // limit as the file (a 2 x 300 000 image would become 16 x 2 400 000).
      const int64_t shorter = std::min(d.h, d.w), longer = std::max(d.h, d.w);
      const double resized = double(s.h) * double(s.h) * double(longer) / double(shorter);
      BISSL_CHECK(opts.max_pixels <= 0 || resized <= double(opts.max_pixels), path, ": a ", d.w, "x", d.h,
                  " image with its shorter side resampled to ", s.h, " would hold ", with_commas(int64_t(resized)),
                  " pixels, more than the limit of ", with_commas(opts.max_pixels), " (an extreme aspect ratio)");
      Image r = resize_shorter(from_uint8(d.px.data(), d.h, d.w, s.c), s.h, opts.interp);
      to_uint8(center_crop(r, s.h, s.w), out);
      return;
    }
    throw size_error(path, d.h, d.w, s, opts, first_path);
  }
  std::copy(d.px.begin(), d.px.end(), out);
}

// Image files decoded when read (a lazy ImageSet): each read decodes the file
// and fits it exactly as decode_image_list does, so a lazy set's images are
// bitwise those of the same list decoded into memory. Decoded images are
// kept, first come, until the cache holds cache_bytes: with the loader's
// random order, a cache holding a fraction f of the set serves f of the reads.
class FileSource final : public ImageSource {
 public:
  struct File {
    std::string path;
    int64_t size = 0, mtime_ns = 0;
  };
  FileSource(std::vector<File> files, ImageSet shape, DecodeOptions opts)
      : files_(std::move(files)), shape_(std::move(shape)), opts_(std::move(opts)) {
    shape_.labels.clear(), shape_.class_names.clear(), shape_.targets.clear();
    list_bytes_ = int64_t(sizeof(*this));
    for (auto& f : files_) list_bytes_ += int64_t(sizeof(File) + f.path.capacity());
  }
  void read(int64_t i, uint8_t* dst) const override {
    const int64_t b = shape_.image_bytes();
    if (opts_.cache_bytes > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(i);
      if (it != cache_.end()) {
        std::copy(it->second.begin(), it->second.end(), dst);
        return;
      }
    }
    const std::string& path = files_[size_t(i)].path;
    fit_decoded(decode_image_file(path, shape_.c, opts_.max_pixels), shape_, opts_, path, files_[0].path, dst);
    if (opts_.cache_bytes > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + b <= opts_.cache_bytes && cache_.emplace(i, std::vector<uint8_t>(dst, dst + b)).second)
        cached_ += b;
    }
  }
  void add_to(Digest& d) const override {
    d.add_text("image files");
    for (int64_t v : {shape_.h, shape_.w, shape_.c, int64_t(opts_.fit), int64_t(opts_.interp), opts_.max_pixels,
                      int64_t(files_.size())})
      d.add_value(v);
    for (auto& f : files_) {
      d.add_text(f.path);
      d.add_value(f.size);
      d.add_value(f.mtime_ns);
    }
  }
  int64_t resident_bytes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return list_bytes_ + cached_ + int64_t(cache_.size()) * 64;  // 64: a map node and its vector, about
  }

 private:
  std::vector<File> files_;
  ImageSet shape_;  // h, w, c only
  DecodeOptions opts_;
  int64_t list_bytes_ = 0;
  mutable std::mutex mu_;
  mutable std::unordered_map<int64_t, std::vector<uint8_t>> cache_;
  mutable int64_t cached_ = 0;
};

// decode_image_list with opts.lazy: every file's header read (in parallel) for
// its size and the pixel limit (image_header), nothing decoded.
ImageSet lazy_image_list(const ImageList& list, const DecodeOptions& opts, ImageSet s, DecodeReport* report) {
  const int64_t n = int64_t(list.files.size());
  std::vector<FileSource::File> files(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<char> wrong_size(static_cast<size_t>(n), 0);
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      const std::string& path = list.files[size_t(i)];
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) {
        errors[size_t(i)] = str(path, ": cannot read the image (", std::strerror(errno), ")");
        continue;
      }
      ImageHeader hd;
      try {
        BISSL_CHECK(st.st_size < off_t(1) << 31, path, ": expected an image below 2 GiB, found ", st.st_size, " bytes");
        hd = image_header(path);
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
        continue;
      }
      const int w = hd.w, h = hd.h;
      if (opts.max_pixels > 0 && int64_t(w) * int64_t(h) > opts.max_pixels) {
        errors[size_t(i)] = str(path, ": the image declares ", w, "x", h, " = ", with_commas(int64_t(w) * h),
                                " pixels, more than the limit of ", with_commas(opts.max_pixels),
                                " (a decompression-bomb guard; raise max_image_pixels to read it)");
      } else if (opts.fit == Fit::Exact && (h != s.h || w != s.w)) {
        // Not a bad file but a wrong size: an error even with skip_bad, as when decoded into memory.
        errors[size_t(i)] = size_error(path, h, w, s, opts, list.files[0]).what();
        wrong_size[size_t(i)] = 1;
      }
      files[size_t(i)] = {path, int64_t(st.st_size), int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
    }
  };
  int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, n));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::vector<FileSource::File> keep;
  DecodeReport rep;
  for (int64_t i = 0; i < n; ++i) {
    if (errors[size_t(i)].empty()) {
      keep.push_back(files[size_t(i)]);
      s.labels.push_back(list.labels[size_t(i)]);
      continue;
    }
    if (!opts.skip_bad || wrong_size[size_t(i)]) throw Error(errors[size_t(i)]);
    if (rep.bad++ == 0) rep.first_bad = errors[size_t(i)];
  }
  BISSL_CHECK(!keep.empty(), list.source, ": none of the ", n, " images could be read (the first: ", rep.first_bad,
              ")");
  if (report) *report = rep;
  s.n = int64_t(keep.size());
  ImageSet shape;
  shape.h = s.h, shape.w = s.w, shape.c = s.c;
  s.lazy = std::make_shared<const FileSource>(std::move(keep), std::move(shape), opts);
  return s;
}

}  // namespace

DecodedImage decode_image_file(const std::string& path, int64_t channels, int64_t max_pixels) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  BISSL_CHECK(!bytes.empty(), path, ": expected an image, found an empty file");
  BISSL_CHECK(bytes.size() < size_t(1) << 31, path, ": expected an image below 2 GiB, found ", bytes.size(), " bytes");
  check_for_stb(path, bytes.data(), bytes.size());
  check_png_chunks(path, bytes.data(), bytes.size());
  check_raw_pixels(path, bytes.data(), bytes.size());
  int w = 0, h = 0, file_c = 0;
  // The size its header declares, checked before stb_image allocates for it
  // (a 571 KB PNG may declare 14 000 x 14 000 pixels). A header stb_image
  // cannot read is left to the decode below, which says why.
  if (max_pixels > 0 && stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &file_c)) {
    const int64_t declared = int64_t(w) * int64_t(h);
    BISSL_CHECK(declared <= max_pixels, path, ": the image declares ", w, "x", h, " = ", with_commas(declared),
                " pixels, more than the limit of ", with_commas(max_pixels),
                " (a decompression-bomb guard; raise max_image_pixels to read it)");
  }
  uint8_t* p = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &file_c, int(channels));
  BISSL_CHECK(p, path, ": cannot decode the image (stb_image: ", stbi_failure_reason(), ")");
  if (w <= 0 || h <= 0) {  // stb_image 2.27 decodes a PNM header of height 0 (found by fuzz_image)
    stbi_image_free(p);
    throw Error(str(path, ": expected an image of at least 1x1 pixels, found ", w, "x", h));
  }
  Decoded d;
  d.h = h;
  d.w = w;
  d.px.assign(p, p + size_t(h) * size_t(w) * size_t(channels));
  stbi_image_free(p);
  return d;
}

int64_t image_file_channels(const std::string& path) { return image_header(path).c; }

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> e = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm"};
  return e;
}

namespace {

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// What a folder entry is, following symbolic links; a link that cannot be
// followed because it loops is an error naming it (a dangling link is
// simply not a file).
fs::file_type entry_type(const fs::directory_entry& e) {
  std::error_code ec;
  const fs::file_status st = e.status(ec);
  BISSL_CHECK(!ec || st.type() == fs::file_type::not_found, e.path().string(), ": cannot tell what it is (",
              ec.message(), ")");
  return st.type();
}

// The sorted entries of a folder (none hidden), as an error naming the folder
// when it cannot be listed.
std::vector<fs::directory_entry> list_dir(const fs::path& dir) {
  std::vector<fs::directory_entry> r;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (!hidden(it->path())) r.push_back(*it);
  BISSL_CHECK(!ec, dir.string(), ": cannot list the folder (", ec.message(), ")");
  std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  return r;
}

// Every regular file below `dir`, through folders and symbolic links to
// folders; a link back to a folder it is inside (a loop: the walk would
// never end) is an error naming both.
void walk_files(const fs::path& dir, std::vector<std::pair<fs::path, std::pair<dev_t, ino_t>>>& ancestors,
                const std::function<void(const fs::path&)>& file) {
  struct stat st {};
  BISSL_CHECK(::stat(dir.c_str(), &st) == 0, dir.string(), ": cannot read the folder (", std::strerror(errno), ")");
  const auto id = std::make_pair(st.st_dev, st.st_ino);
  for (const auto& a : ancestors)
    BISSL_CHECK(a.second != id, dir.string(), ": a symbolic link back to ", a.first.string(),
                ", a folder it is inside: the images below would never end; remove the link");
  ancestors.emplace_back(dir, id);
  for (const fs::directory_entry& e : list_dir(dir)) {
    const fs::file_type t = entry_type(e);
    if (t == fs::file_type::directory) walk_files(e.path(), ancestors, file);
    else if (t == fs::file_type::regular) file(e.path());
  }
  ancestors.pop_back();
}

}  // namespace

ImageList list_image_folder(const std::string& root, const FolderListOptions& opts) {
  BISSL_CHECK(opts.order == "class" || opts.order == "name", "image folder ", root,
              ": the image order must be class or name, found ", quote(opts.order));
  std::error_code ec;
  BISSL_CHECK(fs::is_directory(root, ec), root, ": expected a directory with one sub-folder per class, found none");
  std::vector<std::string> found;
  for (const fs::directory_entry& e : list_dir(root))
    if (entry_type(e) == fs::file_type::directory) found.push_back(e.path().filename().string());
  std::sort(found.begin(), found.end());
  BISSL_CHECK(!found.empty(), root, ": expected one sub-folder per class, found no sub-folders");

  ImageList l;
  l.source = str("image folder ", root);
  l.class_names = opts.classes.empty() ? found : opts.classes;
  struct Entry {
    std::string rel;  // below the class folder
    int64_t label;
    std::string path;
  };
  std::vector<Entry> entries;
  for (const std::string& cls : found) {
    auto it = std::find(l.class_names.begin(), l.class_names.end(), cls);
    BISSL_CHECK(it != l.class_names.end(), root, "/", cls, ": class ", quote(cls),
                " is not among the training classes (", l.class_names.size(), ": ", l.class_names.front(),
                l.class_names.size() > 1 ? ", ..." : "", ")");
    const int64_t label = int64_t(it - l.class_names.begin());
    const fs::path dir = fs::path(root) / cls;
    int64_t images = 0;
    std::vector<std::pair<fs::path, std::pair<dev_t, ino_t>>> ancestors;
    walk_files(dir, ancestors, [&](const fs::path& f) {
      const std::string ext = lower(f.extension().string());
      if (std::find(opts.extensions.begin(), opts.extensions.end(), ext) == opts.extensions.end()) {
        ++l.skipped;
        return;
      }
      entries.push_back({f.lexically_relative(dir).generic_string(), label, f.string()});
      ++images;
    });
    BISSL_CHECK(images > 0 || opts.allow_empty_class, root, "/", cls,
                ": expected at least one image in the class folder, found none");
  }
  std::sort(entries.begin(), entries.end(), [&](const Entry& x, const Entry& y) {
    if (opts.order == "name") return x.rel != y.rel ? x.rel < y.rel : x.label < y.label;
    return x.label != y.label ? x.label < y.label : x.rel < y.rel;
  });
  for (auto& e : entries) {
    l.files.push_back(e.path);
    l.names.push_back(l.class_names[size_t(e.label)] + "/" + e.rel);
    l.labels.push_back(e.label);
  }
  return l;
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  std::string text(bytes.begin(), bytes.end());
  std::vector<std::string> names;
  std::istringstream in(text);
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t b = line.find_first_not_of(" \t"), e = line.find_last_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    std::string name = line.substr(b, e - b + 1);
    BISSL_CHECK(std::find(names.begin(), names.end(), name) == names.end(), path, ":", no, ": class ", quote(name),
                " is listed twice");
    names.push_back(name);
  }
  BISSL_CHECK(!names.empty(), path, ": expected one class name per line, found none");
  return names;
}

namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> r;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') cur += '"', ++i;
      else if (ch == '"') quoted = false;
      else cur += ch;
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      r.push_back(cur), cur.clear();
    } else {
      cur += ch;
    }
  }
  r.push_back(cur);
  for (auto& f : r) {
    const size_t b = f.find_first_not_of(" \t"), e = f.find_last_not_of(" \t");
    f = b == std::string::npos ? "" : f.substr(b, e - b + 1);
  }
  return r;
}

bool parse_index(const std::string& s, int64_t& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end != 0) return false;
  v = x;
  return true;
}

}  // namespace

ImageList read_split_file(const std::string& path, const std::string& image_root,
                          const std::vector<std::string>& class_names) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  std::string text(bytes.begin(), bytes.end());
  ImageList l;
  l.source = str("split file ", path);
  std::istringstream in(text);
  std::string line;
  int64_t no = 0;
  bool csv = false, first = true;
  size_t path_col = 0, label_col = 1;
  std::vector<int64_t> line_of;  // the line of each entry, for the duplicate message
  std::vector<std::string> raw_labels;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    std::vector<std::string> fields;
    if (first) {
      first = false;
      if (line.find(',') != std::string::npos) {
        // A CSV header names its columns.
        std::vector<std::string> head = split_csv(line);
        auto col = [&](std::initializer_list<const char*> names) -> int64_t {
          for (size_t i = 0; i < head.size(); ++i)
            for (const char* n : names)
              if (lower(head[i]) == n) return int64_t(i);
          return -1;
        };
        const int64_t pc = col({"path", "file", "filename", "image"}), lc = col({"label", "class"});
        BISSL_CHECK(pc >= 0 && lc >= 0, path, ":", no, ": a CSV split file starts with a header naming the columns "
                    "path and label, found '", line, "'");
        csv = true, path_col = size_t(pc), label_col = size_t(lc);
        continue;
      }
    }
    if (csv) {
      fields = split_csv(line);
    } else {
      std::istringstream ls(line);
      for (std::string f; ls >> f;) fields.push_back(f);
    }
    const size_t need = std::max(path_col, label_col) + 1;
    BISSL_CHECK(fields.size() == need || (csv && fields.size() >= need), path, ":", no, ": expected ",
                csv ? "the header's columns" : "'relative/path label'", ", found '", line, "'");
    const std::string rel = fields[path_col], lab = fields[label_col];
    BISSL_CHECK(!rel.empty() && !lab.empty(), path, ":", no, ": expected a path and a label, found '", line, "'");
    int64_t label = -1;
    if (!class_names.empty()) {
      auto it = std::find(class_names.begin(), class_names.end(), lab);
      if (it != class_names.end()) label = int64_t(it - class_names.begin());
      else if (parse_index(lab, label))
        BISSL_CHECK(label >= 0 && label < int64_t(class_names.size()), path, ":", no, ": label ", label,
                    " is outside the ", class_names.size(), " classes [0, ", class_names.size(), ")");
      else
        throw Error(str(path, ":", no, ": label ", quote(lab), " is neither a class index nor one of the ",
                        class_names.size(), " class names"));
    } else {
      BISSL_CHECK(parse_index(lab, label) && label >= 0, path, ":", no,
                  ": expected a class index >= 0 (no class-names file), found ", quote(lab));
      // The classes are then 0..the largest index: one line must not make
      // millions of them (fuzz_split_file: "a.png 063095123" took 1.4 GB).
      BISSL_CHECK(label < kMaxClassIndex, path, ":", no, ": expected a class index below ",
                  with_commas(kMaxClassIndex), " without a class-names file (the classes are 0 to the largest index), ",
                  "found ", label, "; list the classes in a file (task.class_names_file) for more");
    }
    const fs::path full = fs::path(image_root) / rel;
    std::error_code ec;
    BISSL_CHECK(fs::is_regular_file(full, ec), path, ":", no, ": image ", quote(rel), " does not exist (looked for ",
                full.string(), ")");
    l.files.push_back(full.string());
    l.names.push_back(rel);
    l.labels.push_back(label);
    line_of.push_back(no);
  }
  BISSL_CHECK(!l.files.empty(), path, ": expected one image per line, found none");
  // A path listed twice.
  std::vector<size_t> order(l.names.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return l.names[x] < l.names[y]; });
  for (size_t k = 1; k < order.size(); ++k)
    BISSL_CHECK(l.names[order[k]] != l.names[order[k - 1]], path, ":", line_of[order[k]], ": image ",
                quote(l.names[order[k]]), " is listed twice (also on line ", line_of[order[k - 1]], ")");
  if (!class_names.empty()) {
    l.class_names = class_names;
  } else {
    const int64_t n = *std::max_element(l.labels.begin(), l.labels.end()) + 1;
    for (int64_t c = 0; c < n; ++c) l.class_names.push_back(std::to_string(c));
  }
  return l;
}

ImageSet decode_image_list(const ImageList& list, const DecodeOptions& opts, DecodeReport* report) {
  const std::string& where = list.source;
  BISSL_CHECK(!list.files.empty(), where, ": no images");
  BISSL_CHECK(opts.channels == 0 || opts.channels == 1 || opts.channels == 3, where,
              ": expected 1 or 3 channels (0 = from the first image), found ", opts.channels);
  BISSL_CHECK(opts.fit == Fit::Exact || (opts.height > 0 && opts.width > 0), where,
              ": resizing needs a positive height and width, found ", opts.height, "x", opts.width);
  BISSL_CHECK(opts.fit != Fit::ShorterCrop || opts.height == opts.width, where,
              ": a centre square needs height = width, found ", opts.height, "x", opts.width);
  const int64_t n = int64_t(list.files.size());
  ImageSet s;
  s.num_classes = int64_t(list.class_names.size());
  s.class_names = list.class_names;
  s.source = where;

  // Channels and output size from the first image, when the options leave
  // them open: the first that decodes when bad images are skipped.
  const bool sized = opts.height > 0 && opts.width > 0;
  Decoded first;
  int64_t first_at = -1;
  if (opts.channels == 0 || !sized) {
    for (int64_t i = 0; i < n && first_at < 0; ++i) {
      try {
        s.c = opts.channels > 0 ? opts.channels : (image_file_channels(list.files[size_t(i)]) <= 2 ? 1 : 3);
        if (!sized) first = decode_image_file(list.files[size_t(i)], s.c, opts.max_pixels);
        first_at = i;
      } catch (const std::exception&) {
        if (!opts.skip_bad || i + 1 == n) throw;
      }
    }
  } else {
    s.c = opts.channels;
  }
  if (sized) {
    s.h = opts.height;
    s.w = opts.width;
  } else {
    s.h = first.h;
    s.w = first.w;
  }
  if (opts.lazy) return lazy_image_list(list, opts, std::move(s), report);
  std::vector<uint8_t> pixels(size_t(n * s.image_bytes()));
  auto place = [&](int64_t i, Decoded d) {
    fit_decoded(d, s, opts, list.files[size_t(i)], list.files[0], pixels.data() + size_t(i * s.image_bytes()));
  };

  int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<char> decode_failed(static_cast<size_t>(n), 0);
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      Decoded d;
      try {
        d = i == first_at && !first.px.empty() ? std::move(first)
                                                : decode_image_file(list.files[size_t(i)], s.c, opts.max_pixels);
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
        decode_failed[size_t(i)] = 1;
        continue;
      }
      try {
        place(i, std::move(d));
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  // The first failing file in order, so the message does not depend on timing;
  // with skip_bad, images that could not be decoded are left out.
  std::vector<int64_t> keep;
  DecodeReport rep;
  for (int64_t i = 0; i < n; ++i) {
    if (errors[size_t(i)].empty()) {
      keep.push_back(i);
      continue;
    }
    if (!(opts.skip_bad && decode_failed[size_t(i)])) throw Error(errors[size_t(i)]);
    if (rep.bad++ == 0) rep.first_bad = errors[size_t(i)];
  }
  BISSL_CHECK(!keep.empty(), where, ": none of the ", n, " images could be decoded (the first: ", rep.first_bad, ")");
  if (report) *report = rep;
  s.n = int64_t(keep.size());
  if (s.n == n) {
    s.pixels = std::move(pixels);
    s.labels = list.labels;
  } else {
    s.pixels.resize(size_t(s.n * s.image_bytes()));
    for (size_t k = 0; k < keep.size(); ++k) {
      std::copy_n(pixels.data() + size_t(keep[k] * s.image_bytes()), size_t(s.image_bytes()),
                  s.pixels.data() + k * size_t(s.image_bytes()));
      s.labels.push_back(list.labels[size_t(keep[k])]);
    }
  }
  return s;
}

ImageSet load_image_folder(const std::string& root, const ImageFolderOptions& opts) {
  BISSL_CHECK(opts.channels == 1 || opts.channels == 3, "image folder ", root, ": expected 1 or 3 channels, found ",
              opts.channels);
  BISSL_CHECK(!opts.resize || (opts.height > 0 && opts.width > 0), "image folder ", root,
              ": resizing needs a positive height and width, found ", opts.height, "x", opts.width);
  FolderListOptions lo;
  lo.extensions = opts.extensions;
  DecodeOptions d;
  d.channels = opts.channels;
  d.height = opts.height, d.width = opts.width;
  d.fit = opts.resize ? Fit::Squash : Fit::Exact;
  d.interp = opts.interp;
  d.threads = opts.threads;
  d.max_pixels = opts.max_pixels;
  return decode_image_list(list_image_folder(root, lo), d);
}

}  // namespace bissl::data
