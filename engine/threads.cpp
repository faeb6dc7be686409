#include "engine/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <cstdio>

#include "engine/error.h"

namespace bissl {

namespace threads_detail {

double parse_cpu_max(const std::string& text) {
  std::istringstream in(text);
  std::string quota;
  double period = 0;
  if (!(in >> quota) || quota == "max") return 0;
  if (!(in >> period) || period <= 0) period = 100000;  // the kernel's default period
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || q <= 0) return 0;
  return q / period;
}

double parse_cfs(const std::string& quota, const std::string& period) {
  const double q = std::atof(quota.c_str()), p = std::atof(period.c_str());
  return q > 0 && p > 0 ? q / p : 0;
}

std::string cgroup_path(const std::string& text, bool v2) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // hierarchy-ID:controller-list:path
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (v2) {
      if (id == "0" && ctl.empty()) return path;
      continue;
    }
    std::istringstream cs(ctl);
    std::string c;
    while (std::getline(cs, c, ','))
      if (c == "cpu") return path;
  }
  return "";
}

int threads_for(int affinity, double quota) {
  int t = std::max(1, affinity);
  if (quota > 0) t = std::min(t, std::max(1, int(std::floor(quota + 1e-9))));
  return t;
}

}  // namespace threads_detail

namespace {

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return f ? s.str() : std::string();
}

bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

// The tightest quota along the cgroup path (a parent's limit binds too).
double quota_along(std::string dir, const std::string& root, bool v2) {
  double best = 0;
  for (;;) {
    double q = 0;
    if (v2)
      q = threads_detail::parse_cpu_max(read(dir + "/cpu.max"));
    else
      q = threads_detail::parse_cfs(read(dir + "/cpu.cfs_quota_us"), read(dir + "/cpu.cfs_period_us"));
    if (q > 0) best = best > 0 ? std::min(best, q) : q;
    if (dir.size() <= root.size()) break;
    dir = dir.substr(0, dir.find_last_of('/'));
    if (dir.size() < root.size()) dir = root;
  }
  return best;
}

double cgroup_quota() {
  const std::string self = read("/proc/self/cgroup");
  if (self.empty()) return 0;
  auto under = [](const std::string& root, std::string path) {
    while (!path.empty() && path.back() == '/') path.pop_back();
    return root + path;
  };
  if (exists("/sys/fs/cgroup/cgroup.controllers")) {  // v2
    const std::string p = threads_detail::cgroup_path(self, true);
    return quota_along(under("/sys/fs/cgroup", p), "/sys/fs/cgroup", true);
  }
  const std::string p = threads_detail::cgroup_path(self, false);
  for (const char* root : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
    if (!exists(std::string(root) + "/cpu.cfs_period_us")) continue;
    // In a container the path names the host's hierarchy while the
    // container's own cgroup is mounted at the root: read the root as well.
    double q = quota_along(under(root, p), root, false);
    if (q <= 0 && !p.empty() && p != "/") q = quota_along(root, root, false);
    return q;
  }
  return 0;
}

std::mutex g_mu;
std::string g_summary;

}  // namespace

CpuBudget cpu_budget() {
  CpuBudget b;
  cpu_set_t set;
  CPU_ZERO(&set);
  b.affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : omp_get_num_procs();
  b.quota = cgroup_quota();
  b.threads = threads_detail::threads_for(b.affinity, b.quota);
  if (b.quota > 0 && b.threads < b.affinity)
    b.why = str("a cgroup CPU quota of ", b.quota, " CPUs (", b.affinity, " CPUs in the affinity mask)");
  else
    b.why = str(b.affinity, " CPUs in the affinity mask");
  return b;
}

std::string apply_thread_budget() {
  std::string why;
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env && *env) {
    why = str("OMP_NUM_THREADS=", env);
  } else {
    const CpuBudget b = cpu_budget();
    omp_set_num_threads(b.threads);
    why = b.why;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  g_summary = why;
  return str(omp_get_max_threads(), " threads, from ", why);
}

std::string wait_policy_summary() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (policy && *policy) return str("OMP_WAIT_POLICY=", policy);
  if (spin && *spin) return str("GOMP_SPINCOUNT=", spin);
  return "libgomp's default spin";
}

void set_thread_budget_summary(const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_summary = why;
}

std::string thread_budget_summary() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_summary;
}

}  // namespace bissl
