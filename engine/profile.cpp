#include "engine/profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace bissl {

namespace {
struct Entry {
  double seconds = 0;
  int64_t calls = 0;
};
struct Profile {
  std::mutex mu;
  std::map<std::string, Entry> ops;
  ~Profile() {
    if (!ops.empty()) std::fprintf(stderr, "%s", op_profile_table().c_str());
  }
};
Profile& prof() {
  static Profile p;
  return p;
}
}  // namespace

bool op_profiling() {
  static const bool on = [] {
    const char* v = std::getenv("BISSL_PROFILE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

void op_profile_add(const std::string& name, double seconds, int64_t calls) {
  auto& p = prof();
  std::lock_guard<std::mutex> lock(p.mu);
  auto& e = p.ops[name];
  e.seconds += seconds;
  e.calls += calls;
}

std::string op_profile_table() {
  auto& p = prof();
  std::vector<std::pair<std::string, Entry>> rows(p.ops.begin(), p.ops.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
  // Rows named "<op>:vjp" time a whole VJP rule, which runs ops that have
  // rows of their own: shares are of the op rows only.
  double total = 0;
  for (auto& r : rows)
    if (r.first.find(":vjp") == std::string::npos) total += r.second.seconds;
  std::string out = "bissl op profile (host wall time; <op>:vjp rows include the ops their rule runs)\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %10s %8s %10s %7s\n", "op", "calls", "total s", "ms/call", "share");
  out += line;
  for (auto& [name, e] : rows) {
    std::snprintf(line, sizeof line, "%-28s %10lld %8.3f %10.3f %6.1f%%\n", name.c_str(), (long long)e.calls, e.seconds,
                  1e3 * e.seconds / double(std::max<int64_t>(e.calls, 1)), 100.0 * e.seconds / std::max(total, 1e-12));
    out += line;
  }
  return out;
}

}  // namespace bissl
