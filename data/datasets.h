#pragma once
// Dataset readers. Each returns an ImageSet (uint8 HWC + int64 labels) and
// throws bissl::Error with a one-line message naming the file and saying what
// was expected and what was found when the input is malformed.
#include <cstdint>
#include <string>
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

// ---- image folders ----
// root/<class>/<image>: one sub-folder per class (sorted by name: label =
// position), images in each sorted by file name, decoded by stb_image (JPEG,
// PNG, BMP, GIF, TGA, PNM). Every image becomes `channels` channels (1 or 3).
struct ImageFolderOptions {
  int64_t channels = 3;
  // Output size. With `resize` every image is resampled to height x width
  // (`interp`); without it, height/width > 0 require exactly that size and 0
  // requires every image to have the size of the first.
  int64_t height = 0, width = 0;
  bool resize = false;
  Interp interp = Interp::Bilinear;
  // Lower-case extensions (with the dot) to accept; others are skipped.
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm"};
  int threads = 0;  // decoding threads; 0 = hardware concurrency
};
ImageSet load_image_folder(const std::string& root, const ImageFolderOptions& opts = {});

}  // namespace bissl::data
