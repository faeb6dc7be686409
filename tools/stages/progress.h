#pragma once
// A progress line for long loops: "label: 12/30 epoch [40%] | <extra> |
// 1.3 epoch/s | ETA 0m14s". On a terminal it redraws one line; otherwise
// (logs, CI) it prints a line at most every 10 s and at the end.
#include <chrono>
#include <cstdint>
#include <string>

namespace bissl::stages {

std::string fmt(double v, int significant);  // "%.*g"
std::string eta_text(double seconds);        // "1h02m", "3m07s", "?"

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit);
  void update(int64_t done, const std::string& extra = "");
  void done();  // ends the line
  double elapsed() const;

 private:
  std::string label_, unit_;
  int64_t total_;
  bool tty_;
  bool open_ = false;
  std::chrono::steady_clock::time_point t0_, last_print_;
};

}  // namespace bissl::stages
