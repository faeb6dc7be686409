#include "engine/threads.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>
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

namespace {
std::string g_wait;  // the policy chosen or found at start; "" before choose_wait_policy
constexpr const char* kChosenVar = "BISSL_WAIT_CHOSEN";  // set for the re-started process only
constexpr const char* kThreadsVar = "BISSL_THREADS_CHOSEN";  // and its thread count under BISSL_THREADS=probe
constexpr double kProbeMs = 40;
}  // namespace

std::vector<double> measure_cpu_shares(int threads, double ms) {
  threads = std::max(threads, 1);
  using clock = std::chrono::steady_clock;
  auto thread_cpu = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  // The first quarter is a warm-up, not measured: a thread that wakes
  // beside low-priority work waits for the scheduler to preempt it once,
  // which says nothing about the share it gets afterwards.
  const auto t0 = clock::now();
  const auto from = t0 + std::chrono::microseconds(int64_t(ms * 250));
  const auto to = t0 + std::chrono::microseconds(int64_t(ms * 1000));
  const double window = std::chrono::duration<double>(to - from).count();
  // One thread per CPU when they are as many as the affinity mask's CPUs,
  // so that each measures its own CPU (left to the scheduler, two new
  // threads may start on one CPU and stay there past the probe); with
  // fewer threads than CPUs (a quota), left to the scheduler as libgomp's are.
  cpu_set_t mask;
  CPU_ZERO(&mask);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof mask, &mask) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mask)) cpus.push_back(c);
  const bool pin = int(cpus.size()) == threads;
  std::vector<double> share(size_t(threads), 0.0);
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads));
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&share, &thread_cpu, &cpus, pin, t, from, to, window] {
      if (pin) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[size_t(t)], &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      }
      volatile uint64_t spin = 0;
      while (clock::now() < from) spin = spin + 1;
      const double c0 = thread_cpu();
      while (clock::now() < to) spin = spin + 1;
      const double c1 = thread_cpu();
      // Over the whole measured window: a thread that got its CPU only near
      // the end (or after it) ran little of the window, which is the point.
      share[size_t(t)] = std::min(1.0, (c1 - c0) / window);
    });
  for (auto& th : pool) th.join();
  return share;
}

double measure_cpu_share(int threads, double ms) {
  const std::vector<double> s = measure_cpu_shares(threads, ms);
  return *std::min_element(s.begin(), s.end());
}

void choose_wait_policy(char** argv, bool under_mpi) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_wait.empty()) return;  // decided already (tool_main, then dist::Session)
  if (const char* chosen = std::getenv(kChosenVar)) {  // the re-started process
    g_wait = str("OMP_WAIT_POLICY=passive (chosen at start: ", chosen, ")");
    if (const char* n = std::getenv(kThreadsVar)) {  // BISSL_THREADS=probe's count
      omp_set_num_threads(std::max(1, std::atoi(n)));
      g_summary = str(g_summary, ", cut by BISSL_THREADS=probe");
      unsetenv(kThreadsVar);
    }
    // libgomp has read it; processes this one starts decide for themselves.
    unsetenv(kChosenVar);
    unsetenv("OMP_WAIT_POLICY");
    return;
  }
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (policy && *policy) {
    g_wait = str("OMP_WAIT_POLICY=", policy);
    return;
  }
  if (spin && *spin) {
    g_wait = str("GOMP_SPINCOUNT=", spin);
    return;
  }
  const char* probe = std::getenv("BISSL_WAIT_PROBE");
  if (probe && std::string(probe) == "0") {
    g_wait = "libgomp's default spin (BISSL_WAIT_PROBE=0)";
    return;
  }
  if (under_mpi) {
    g_wait = "libgomp's default spin (not probed under mpirun)";
    return;
  }
  const int threads = omp_get_max_threads();
  if (threads < 2) {
    g_wait = "libgomp's default spin (one thread)";
    return;
  }
  // No more probe threads than CPUs: threads beyond them would measure our
  // own oversubscription, not other processes' load.
  const int probes = std::max(1, std::min(threads, cpu_budget().affinity));
  std::vector<double> shares;
  try {
    shares = measure_cpu_shares(probes, kProbeMs);
  } catch (const std::exception& e) {  // no thread to be had (a pids limit): keep the default
    g_wait = str("libgomp's default spin (no probe: ", e.what(), ")");
    return;
  }
  const double share = *std::min_element(shares.begin(), shares.end());
  const std::string what = str("the least of ", probes, " threads ran ", int(std::lround(share * 100)), " % of a ",
                               int(kProbeMs), " ms probe");
  if (!threads_detail::contended(share)) {
    g_wait = str("libgomp's default spin (", what, ")");
    return;
  }
  const char* want = std::getenv("BISSL_THREADS");
  const bool cut = want && std::string(want) == "probe";
  const int count = cut ? threads_detail::uncontended_count(shares) : threads;
  if (count == 1) {  // one thread never waits at a barrier: no re-start needed
    omp_set_num_threads(1);
    g_summary = str(g_summary, ", cut by BISSL_THREADS=probe");
    g_wait = str("libgomp's default spin (one thread; ", what, ")");
    return;
  }
  // libgomp reads its wait policy only when it loads: start again with it.
  std::fflush(nullptr);
  setenv("OMP_WAIT_POLICY", "passive", 1);
  setenv(kChosenVar, what.c_str(), 1);
  if (count < threads) setenv(kThreadsVar, std::to_string(count).c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY");
  unsetenv(kChosenVar);
  unsetenv(kThreadsVar);
  g_wait = str("libgomp's default spin (", what, "; re-starting with OMP_WAIT_POLICY=passive failed: ",
               std::strerror(errno), ")");
}

std::string wait_policy_summary() {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_wait.empty()) return g_wait;
  }
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
