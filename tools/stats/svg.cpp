#include "tools/stats/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/dist/comm.h"
#include "engine/error.h"

namespace bissl::evalstats {
namespace {

// matplotlib's tab10, so figures look familiar next to Python ones.
constexpr const char* kPalette[10] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr double kWidth = 720, kLeft = 75, kRight = 180, kTop = 45, kBottom = 60, kMinHeight = 480;
constexpr double kLegendRow = 20;

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '&') r += "&amp;";
    else if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '"') r += "&quot;";
    else r += c;
  }
  return r;
}

// Fixed-point coordinates: "%.2f" ignores the global C++ locale.
std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void write_here(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    BISSL_CHECK(out, "svg: cannot write ", path, " (could not open ", tmp, ")");
    out << text;
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(str("svg: cannot write ", path, " (writing ", tmp, " failed)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(str("svg: cannot write ", path, " (rename from ", tmp, " failed)"));
  }
}

// On several ranks rank 0 writes and the others wait (dist::on_root).
void write_atomic(const std::string& path, const std::string& text) {
  dist::on_root([&] { write_here(path, text); });
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  // A single value (or none) still needs a span to map onto pixels.
  void widen() {
    if (lo > hi) lo = 0, hi = 1;
    if (lo == hi) {
      const double s = lo == 0 ? 1 : std::fabs(lo) * 0.1;
      lo -= s, hi += s;
    }
  }
};

// 1, 2 or 5 × 10^k, chosen so about `target` steps span the range.
double nice_step(double span, int target) {
  const double raw = span / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

std::string tick_label(double v, double step) {
  if (std::fabs(v) < step * 1e-9) v = 0;  // no "-1.4e-17" at the origin
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

struct Frame {
  double height, pw, ph;  // total height, plot width and height
  Range x, y;
  double px(double v) const { return kLeft + (v - x.lo) / (x.hi - x.lo) * pw; }
  double py(double v) const { return kTop + (y.hi - v) / (y.hi - y.lo) * ph; }
};

Frame make_frame(Range x, Range y, size_t legend_rows) {
  Frame f;
  f.height = std::max(kMinHeight, kTop + kLegendRow * (static_cast<double>(legend_rows) + 1) + 10);
  f.pw = kWidth - kLeft - kRight;
  f.ph = f.height - kTop - kBottom;
  f.x = x, f.y = y;
  return f;
}

void header(std::ostringstream& o, const Frame& f, const std::string& title) {
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(kWidth) << "\" height=\""
    << num(f.height) << "\" viewBox=\"0 0 " << num(kWidth) << " " << num(f.height)
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << num(kLeft + f.pw / 2) << "\" y=\"" << num(kTop / 2 + 5)
    << "\" text-anchor=\"middle\" font-size=\"15\">" << escape(title) << "</text>\n";
}

void frame_box(std::ostringstream& o, const Frame& f) {
  o << "<rect x=\"" << num(kLeft) << "\" y=\"" << num(kTop) << "\" width=\"" << num(f.pw)
    << "\" height=\"" << num(f.ph) << "\" fill=\"none\" stroke=\"black\"/>\n";
}

void legend(std::ostringstream& o, const std::vector<std::string>& names, bool lines) {
  const double x = kWidth - kRight + 20;
  for (size_t i = 0; i < names.size(); ++i) {
    const double y = kTop + 10 + kLegendRow * static_cast<double>(i);
    const char* colour = kPalette[i % 10];
    if (lines)
      o << "<line x1=\"" << num(x) << "\" y1=\"" << num(y) << "\" x2=\"" << num(x + 18) << "\" y2=\""
        << num(y) << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n";
    else
      o << "<circle cx=\"" << num(x + 9) << "\" cy=\"" << num(y) << "\" r=\"4\" fill=\"" << colour
        << "\"/>\n";
    o << "<text x=\"" << num(x + 24) << "\" y=\"" << num(y + 4) << "\">" << escape(names[i])
      << "</text>\n";
  }
}

}  // namespace

void write_scatter_svg(const std::string& path, const std::vector<std::array<double, 2>>& pts,
                       const std::vector<int64_t>& labels, const std::vector<std::string>& class_names,
                       const std::string& title) {
  BISSL_CHECK(labels.size() == pts.size(), "write_scatter_svg(", path, "): expected one label per point, found ",
              pts.size(), " points and ", labels.size(), " labels");
  size_t classes = class_names.size();
  for (int64_t l : labels) {
    BISSL_CHECK(l >= 0, "write_scatter_svg(", path, "): expected labels >= 0, found ", l);
    classes = std::max(classes, static_cast<size_t>(l) + 1);
  }
  std::vector<std::string> names(classes);
  for (size_t c = 0; c < classes; ++c) names[c] = c < class_names.size() ? class_names[c] : str("class ", c);

  Range x, y;
  for (const auto& p : pts) {
    if (std::isfinite(p[0]) && std::isfinite(p[1])) x.add(p[0]), y.add(p[1]);
  }
  x.widen(), y.widen();
  // 4 % padding so points on the extremes are not cut by the frame.
  const double padx = (x.hi - x.lo) * 0.04, pady = (y.hi - y.lo) * 0.04;
  x.lo -= padx, x.hi += padx, y.lo -= pady, y.hi += pady;
  const Frame f = make_frame(x, y, names.size());

  std::ostringstream o;
  header(o, f, title);
  frame_box(o, f);
  for (size_t i = 0; i < pts.size(); ++i) {
    if (!std::isfinite(pts[i][0]) || !std::isfinite(pts[i][1])) continue;
    o << "<circle cx=\"" << num(f.px(pts[i][0])) << "\" cy=\"" << num(f.py(pts[i][1]))
      << "\" r=\"3\" fill-opacity=\"0.8\" fill=\"" << kPalette[labels[i] % 10] << "\"/>\n";
  }
  legend(o, names, false);
  o << "</svg>\n";
  write_atomic(path, o.str());
}

void write_lines_svg(const std::string& path, const std::vector<Series>& series, const std::string& title,
                     const std::string& xlabel, const std::string& ylabel) {
  Range x, y;
  std::vector<std::string> names;
  for (const auto& s : series) {
    BISSL_CHECK(s.x.size() == s.y.size(), "write_lines_svg(", path, "): series \"", s.name,
                "\" has ", s.x.size(), " x values and ", s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) x.add(s.x[i]), y.add(s.y[i]);
    names.push_back(s.name);
  }
  x.widen(), y.widen();
  // Snap the axes outward to whole ticks so the first and last are labelled.
  const double xs = nice_step(x.hi - x.lo, 5), ys = nice_step(y.hi - y.lo, 5);
  x.lo = std::floor(x.lo / xs) * xs, x.hi = std::ceil(x.hi / xs) * xs;
  y.lo = std::floor(y.lo / ys) * ys, y.hi = std::ceil(y.hi / ys) * ys;
  const Frame f = make_frame(x, y, names.size());

  std::ostringstream o;
  header(o, f, title);
  // Ticks as lo + i·step: repeated += would drift off the snapped ends.
  const int nx = static_cast<int>(std::lround((x.hi - x.lo) / xs)), ny = static_cast<int>(std::lround((y.hi - y.lo) / ys));
  for (int i = 0; i <= nx; ++i) {
    const double v = x.lo + i * xs, px = f.px(v);
    o << "<line x1=\"" << num(px) << "\" y1=\"" << num(kTop) << "\" x2=\"" << num(px) << "\" y2=\""
      << num(kTop + f.ph) << "\" stroke=\"#e0e0e0\"/>\n"
      << "<text x=\"" << num(px) << "\" y=\"" << num(kTop + f.ph + 16) << "\" text-anchor=\"middle\">"
      << tick_label(v, xs) << "</text>\n";
  }
  for (int i = 0; i <= ny; ++i) {
    const double v = y.lo + i * ys, py = f.py(v);
    o << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(py) << "\" x2=\"" << num(kLeft + f.pw)
      << "\" y2=\"" << num(py) << "\" stroke=\"#e0e0e0\"/>\n"
      << "<text x=\"" << num(kLeft - 6) << "\" y=\"" << num(py + 4) << "\" text-anchor=\"end\">"
      << tick_label(v, ys) << "</text>\n";
  }
  frame_box(o, f);
  o << "<text x=\"" << num(kLeft + f.pw / 2) << "\" y=\"" << num(f.height - 15)
    << "\" text-anchor=\"middle\">" << escape(xlabel) << "</text>\n"
    << "<text transform=\"translate(18 " << num(kTop + f.ph / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(ylabel) << "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const char* colour = kPalette[k % 10];
    std::string pts;
    size_t run = 0;
    double last_x = 0, last_y = 0;
    auto flush = [&] {
      // A lone point has no segment; mark it so it is still visible.
      if (run == 1)
        o << "<circle cx=\"" << num(last_x) << "\" cy=\"" << num(last_y) << "\" r=\"2.5\" fill=\"" << colour
          << "\"/>\n";
      else if (run > 1)
        o << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.8\" points=\"" << pts
          << "\"/>\n";
      pts.clear(), run = 0;
    };
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        continue;
      }
      last_x = f.px(s.x[i]), last_y = f.py(s.y[i]);
      pts += (run ? " " : "") + num(last_x) + "," + num(last_y);
      ++run;
    }
    flush();
  }
  legend(o, names, true);
  o << "</svg>\n";
  write_atomic(path, o.str());
}

}  // namespace bissl::evalstats
