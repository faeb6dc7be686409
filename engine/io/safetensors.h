#pragma once
// safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Any PyTorch/HF tool
// reads what we write and we read what they write (dtypes F32, F64, BF16, I64).
//
// Loading trusts nothing in the file: every field is checked before it sizes
// an allocation or a read, and each failure is a bissl::Error naming the file.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace bissl::io {

// Ordered, because the order is the file's data order and a state dict's
// parameter order; lookups are rare enough that a linear scan is fine.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;                         // in data-buffer order
  std::map<std::string, std::string> metadata;  // the "__metadata__" entry
  std::string path;                             // where it was loaded from (for messages)

  // Throws bissl::Error naming the file and the tensors it does hold.
  const Tensor& get(const std::string& name) const;
  bool has(const std::string& name) const;
};

// Writes path + ".tmp.<pid>", flushes it to disk, then renames it over
// `path`, so a reader (or a killed run) sees the old file or the new one,
// never half of one. The parent directory must exist. Tensors must be
// defined, on the CPU and uniquely named; data is written in the given order.
// On several ranks rank 0 writes and every rank waits (dist::on_root): every
// rank calls it at the same point.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

SafetensorsFile load_safetensors(const std::string& path);

// Largest header we accept, as in the reference implementation; a larger
// length is a corrupt or hostile file, not a model.
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

}  // namespace bissl::io
