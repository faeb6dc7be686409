#pragma once
// Index-level splits of a labelled set: stratified train/val, class subsets
// with label remapping, k labelled images per class, and split files.
// Every random choice is a Philox stream of the seed, so a split is the same
// on every machine. Index lists come back sorted ascending.
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_set.h"

namespace bissl::data {

struct Split {
  std::vector<int64_t> train, val;
};

// Holds out round(val_fraction * n_c) images of every class c (the spec's
// "~20 % of train, class-stratified"). Labels must be in [0, num_classes).
Split stratified_split(const std::vector<int64_t>& labels, int64_t num_classes, double val_fraction, uint64_t seed);
// Holds out exactly `val_per_class` images of every class.
Split stratified_split_count(const std::vector<int64_t>& labels, int64_t num_classes, int64_t val_per_class,
                             uint64_t seed);

// `k` images of every class, drawn at random (an error when a class has fewer).
// With `from` non-empty, only those indices are candidates.
std::vector<int64_t> k_per_class(const std::vector<int64_t>& labels, int64_t num_classes, int64_t k, uint64_t seed,
                                 const std::vector<int64_t>& from = {});

// Indices whose label is in `classes`.
std::vector<int64_t> indices_of_classes(const std::vector<int64_t>& labels, const std::vector<int64_t>& classes);

// The images of `classes` with labels remapped to their position in
// `classes` (e.g. {0, 2, 4, 6} -> 0..3), class names to match.
ImageSet select_classes(const ImageSet& set, const std::vector<int64_t>& classes);

// Split files: text, a header of '#' comment lines, then one index per line.
// Files without a header (one index per line) read too. Loading rejects
// anything else with the file and line number, repeats, negative indices,
// and indices >= max_index when max_index >= 0.
void save_indices(const std::string& path, const std::vector<int64_t>& indices, const std::string& comment = "");
std::vector<int64_t> load_indices(const std::string& path, int64_t max_index = -1);

}  // namespace bissl::data
