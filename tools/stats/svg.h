#pragma once
// Plain-text SVG plots for reports (t-SNE scatter, training curves): no
// dependencies, written atomically (path + ".tmp", then rename).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace bissl::evalstats {

// One colour per class from a fixed 10-colour palette (repeats past 10),
// legend names from class_names ("class k" where it runs short), autoscaled.
// Non-finite points are skipped. Throws bissl::Error naming path on failure.
void write_scatter_svg(const std::string& path, const std::vector<std::array<double, 2>>& pts,
                       const std::vector<int64_t>& labels, const std::vector<std::string>& class_names,
                       const std::string& title);

struct Series {
  std::string name;
  std::vector<double> x, y;
};
// Lines with autoscaled, ticked axes and a legend; a non-finite point breaks
// its line. Throws bissl::Error naming path on failure.
void write_lines_svg(const std::string& path, const std::vector<Series>& series, const std::string& title,
                     const std::string& xlabel, const std::string& ylabel);

}  // namespace bissl::evalstats
