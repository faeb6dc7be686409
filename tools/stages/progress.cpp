#include "tools/stages/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace bissl::stages {

std::string fmt(double v, int significant) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", significant, v);
  return b;
}

std::string eta_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long long t = (long long)s;
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, t % 3600 / 60);
  else std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  return b;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(2)) {
  t0_ = last_print_ = std::chrono::steady_clock::now();
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  auto now = std::chrono::steady_clock::now();
  bool last = done >= total_;
  if (!tty_ && !last && std::chrono::duration<double>(now - last_print_).count() < 10.0) return;
  last_print_ = now;
  double el = elapsed(), rate = double(done) / std::max(el, 1e-9);
  double eta = double(total_ - done) / std::max(rate, 1e-12);
  std::string rate_s = rate >= 1 ? fmt(rate, 3) + " " + unit_ + "/s" : fmt(1 / std::max(rate, 1e-12), 3) + " s/" + unit_;
  std::fprintf(stderr, "%s%s: %lld/%lld %s [%3.0f%%]%s%s | %s | ETA %s%s", tty_ ? "\r" : "", label_.c_str(),
               (long long)done, (long long)total_, unit_.c_str(), 100.0 * double(done) / double(std::max<int64_t>(total_, 1)),
               extra.empty() ? "" : " | ", extra.c_str(), rate_s.c_str(), eta_text(eta).c_str(), tty_ ? "   " : "\n");
  open_ = tty_;
}

void Progress::done() {
  if (open_) std::fprintf(stderr, "\n");
  open_ = false;
}

}  // namespace bissl::stages
