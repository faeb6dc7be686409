#pragma once
// Dataset readers. Each returns an ImageSet (uint8 HWC + int64 labels) and
// throws bissl::Error with a one-line message naming the file and saying what
// was expected and what was found when the input is malformed.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/image_set.h"
#include "data/image.h"

namespace bissl::data {

// Where Debian's `dataset-fashion-mnist` package puts the four .gz files.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// ---- IDX (MNIST, Fashion-MNIST) ----
// One IDX file of unsigned bytes (type 0x08), raw or gzip (told apart by the
// gzip magic 1f 8b, not by the name).
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};
IdxArray read_idx(const std::string& path);

// An images file (n x rows x cols) and a labels file (n), labels < num_classes.
ImageSet load_idx_pair(const std::string& images_path, const std::string& labels_path, int64_t num_classes = 10);

// {train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz, in `dir`.
// 28x28x1; Fashion-MNIST gets its class names, MNIST "0".."9".
ImageSet load_mnist(const std::string& dir, bool train);
ImageSet load_fashion_mnist(const std::string& dir, bool train);
const std::vector<std::string>& fashion_mnist_class_names();

// ---- CIFAR (binary versions) ----
// CIFAR-10: data_batch_1..5.bin (train) or test_batch.bin; records of
// 1 label byte + 3072 bytes (R, G, B planes of 32x32). `dir` may be the
// folder holding the files or its parent (cifar-10-batches-bin/ inside).
ImageSet load_cifar10(const std::string& dir, bool train);
// CIFAR-100: train.bin / test.bin; records of coarse byte, fine byte, 3072
// bytes. Fine labels (100 classes) unless `coarse` (20 superclasses). Class
// names from fine_label_names.txt / coarse_label_names.txt when present.
ImageSet load_cifar100(const std::string& dir, bool train, bool coarse = false);

// ---- STL-10 (binary version) ----
// {train,test}_X.bin + _y.bin, unlabeled_X.bin; 96x96x3 stored column-major
// per channel (transposed to HWC here); labels 1..10 become 0..9; unlabelled
// images get kNoLabel. `limit` >= 0 reads only the first `limit` images.
enum class Stl10Split { Train, Test, Unlabeled };
ImageSet load_stl10(const std::string& dir, Stl10Split split, int64_t limit = -1);

// ---- image folders and split files (data/image_folder.cpp) ----
// A decompression-bomb guard, as Pillow's: an image whose header declares
// more pixels than this is refused before anything is allocated for it
// (Pillow's MAX_IMAGE_PIXELS; 0 = no limit).
constexpr int64_t kMaxImagePixels = 89478485;

// The image files of a labelled collection, before decoding.
struct ImageList {
  std::vector<std::string> files;        // paths as opened
  std::vector<std::string> names;        // as the user knows them (relative to the root), for messages
  std::vector<int64_t> labels;           // indices into class_names
  std::vector<std::string> class_names;
  int64_t skipped = 0;                   // files passed over: not an image by their extension
  std::string source;                    // "image folder <root>", "split file <path>"
};

// The file extensions stb_image decodes (lower case, with the dot).
const std::vector<std::string>& image_extensions();

// root/<class>/...: one sub-folder per class, the classes sorted by name
// (torchvision's ImageFolder indices); every image below a class folder,
// sub-folders included (nested), is that class's. Files whose extension is
// not an image's are counted in `skipped`; hidden entries (".*") ignored.
struct FolderListOptions {
  // Non-empty: the class names and their order (a test folder takes its
  // training folder's); a class folder outside them is an error, a class
  // without a folder has no images.
  std::vector<std::string> classes;
  // Image order: "class" (class after class, each by path: torchvision's) or
  // "name" (by path below the class folder, then by class: a folder written
  // from an ordered dataset keeps that order).
  std::string order = "class";
  std::vector<std::string> extensions = image_extensions();
  bool allow_empty_class = false;  // a class folder with no image: an error unless this
};
ImageList list_image_folder(const std::string& root, const FolderListOptions& opts = {});

// A split file: one image per line, `relative/path label` (whitespace
// separated), or CSV whose first line is a header naming the columns
// `path` (or `file`, `filename`, `image`) and `label` (or `class`). Paths are
// relative to image_root; a label is an index into class_names or one of its
// names; without class_names, labels are integers and the class names
// "0".."max". Blank lines and lines starting with '#' are skipped. Errors
// name the file and line: a missing image file, a path listed twice, a label
// outside the classes, a malformed line.
ImageList read_split_file(const std::string& path, const std::string& image_root,
                          const std::vector<std::string>& class_names = {});
// Class names, one per line (blank lines and '#' lines skipped), each once.
std::vector<std::string> read_class_names(const std::string& path);

// How decoded images become one size.
enum class Fit {
  Exact,        // every image height x width (0 x 0: the first image's size), else an error
  Squash,       // resampled to height x width (aspect ratio not kept)
  ShorterCrop,  // shorter side resampled to height (= width), then the centre square (torchvision Resize + CenterCrop)
};
struct DecodeOptions {
  int64_t channels = 3;  // 1 or 3; 0 = 1 when the first image's file is grey (1 or 2 channels), else 3
  int64_t height = 0, width = 0;
  Fit fit = Fit::Exact;
  Interp interp = Interp::Bilinear;
  bool skip_bad = false;  // an image that cannot be decoded is left out (counted) instead of an error
  int threads = 0;        // decoding threads; 0 = hardware concurrency
  int64_t max_pixels = kMaxImagePixels;  // per image, from its header (0 = no limit)
  // A lazy set (ImageSet::lazy): only the headers are read here (size, pixel
  // limit; with skip_bad, files whose header cannot be read are left out);
  // each image is decoded when the loader reads it, bitwise as it would be
  // here. An image that fails to decode then stops the job naming its file.
  bool lazy = false;
  // Lazy sets: decoded images kept in memory, first come, up to this many bytes.
  int64_t cache_bytes = 0;
};
struct DecodeReport {
  int64_t bad = 0;          // images left out (skip_bad)
  std::string first_bad;    // the first of them, with the reason
};
// Decodes a list into an ImageSet (labels and class names from the list).
ImageSet decode_image_list(const ImageList& list, const DecodeOptions& opts, DecodeReport* report = nullptr);

// root/<class>/<image> in one call (list_image_folder + decode_image_list):
// every image becomes `channels` channels (1 or 3).
struct ImageFolderOptions {
  int64_t channels = 3;
  // Output size. With `resize` every image is resampled to height x width
  // (`interp`); without it, height/width > 0 require exactly that size and 0
  // requires every image to have the size of the first.
  int64_t height = 0, width = 0;
  bool resize = false;
  Interp interp = Interp::Bilinear;
  // Lower-case extensions (with the dot) to accept; others are skipped.
  std::vector<std::string> extensions = image_extensions();
  int threads = 0;  // decoding threads; 0 = hardware concurrency
  int64_t max_pixels = kMaxImagePixels;  // per image, from its header (0 = no limit)
};
ImageSet load_image_folder(const std::string& root, const ImageFolderOptions& opts = {});

// One image file decoded by stb_image into `channels` channels (uint8 HWC).
// An error names the file: unreadable, undecodable, or declaring more than
// max_pixels pixels (checked from its header, before decoding).
struct DecodedImage {
  std::vector<uint8_t> px;
  int64_t h = 0, w = 0;
};
DecodedImage decode_image_file(const std::string& path, int64_t channels, int64_t max_pixels = kMaxImagePixels);
// The channels stored in an image file (stb_image's count: 1 grey, 2 grey +
// alpha, 3 RGB, 4 RGBA), read from its header.
int64_t image_file_channels(const std::string& path);

// ---- multi-label sets (data/multilabel.cpp) ----
// PASCAL VOC 2007 classification, as the reference builds it from the
// detection annotations: image set `image_set` (train | val | trainval |
// test) of ImageSets/Main/<image_set>.txt, image JPEGImages/<id>.jpg, classes
// from the <object> entries of Annotations/<id>.xml (the object's own <name>,
// not its <part>s). A class is kPresent when one of its objects is not
// difficult, kDifficult when all are. The 20 classes in the usual order.
// `root` is the VOC2007 folder, or a folder holding VOC2007/ or
// VOCdevkit/VOC2007/. Images vary in size, so every image is resampled to
// height x width (bilinear) on load; `limit` >= 0 reads the first images only.
struct VocOptions {
  int64_t channels = 3;
  int64_t height = 128, width = 128;
  int64_t limit = -1;
  int threads = 0;  // decoding threads; 0 = hardware concurrency
};
ImageSet load_voc2007(const std::string& root, const std::string& image_set, const VocOptions& opts = {});
const std::vector<std::string>& voc_class_names();
// The classes of one VOC annotation file: (class index, difficult) per
// object, in file order. Exposed for tests.
std::vector<std::pair<int64_t, bool>> parse_voc_objects(const std::string& xml, const std::string& where);

// A synthetic multi-label task from a single-label set: each image is a
// grid x grid mosaic of tiles (images of `tiles`, drawn at random from
// `pool`), each cell filled with probability `fill` (at least one per
// mosaic, empty cells black); its targets are the classes of its tiles.
// Deterministic in `seed`.
struct MosaicOptions {
  int64_t grid = 2;
  int64_t count = 1000;
  double fill = 0.75;
  uint64_t seed = 0;
  std::vector<int64_t> pool;  // tile indices to draw from; empty = every image
};
ImageSet make_mosaics(const ImageSet& tiles, const MosaicOptions& opts);

}  // namespace bissl::data
