#pragma once
// How many threads a process runs: the CPUs it may use, not the machine's.
// libgomp starts one thread per CPU of the affinity mask and ignores a
// container's CPU quota (docker --cpus, a SLURM or Kubernetes limit), so a
// 2-CPU quota on a 64-core host would run 64 threads that the kernel then
// throttles in turns: every parallel region waits for the slowest of them.
//
// cpu_budget() reads the affinity mask and the cgroup quota (v2 cpu.max, or
// v1 cpu.cfs_quota_us / cpu.cfs_period_us, the tightest along the process's
// cgroup path); apply_thread_budget() sets OpenMP's thread count (and so
// OpenBLAS's and oneDNN's, which run on OpenMP's threads) from it, unless
// OMP_NUM_THREADS says otherwise: OMP_NUM_THREADS is the setting.
#include <string>

namespace bissl {

struct CpuBudget {
  int affinity = 1;    // CPUs in the affinity mask
  double quota = 0;    // the cgroup's CPU quota in CPUs; 0 = none
  int threads = 1;     // min(affinity, floor(quota)), at least 1
  std::string why;     // e.g. "2 CPUs in the affinity mask", "cgroup quota of 1.5 CPUs"
};
CpuBudget cpu_budget();

// OMP_NUM_THREADS unset: OpenMP runs cpu_budget().threads threads. Returns
// a line for logs: "2 threads, from 2 CPUs in the affinity mask". Called by
// dist::Session, so by every bissl-* executable (not the doctest and fuzz
// executables, which start no Session).
std::string apply_thread_budget();
// Where the last apply_thread_budget() took the count from ("" before it);
// dist::Session replaces it when ranks on one machine share the budget.
std::string thread_budget_summary();
void set_thread_budget_summary(const std::string& why);

// How long an idle OpenMP thread spins before it sleeps is libgomp's
// setting, read only when it loads: OMP_WAIT_POLICY / GOMP_SPINCOUNT in the
// environment. No value is best everywhere (docs/performance.md, "CPU
// beside PyTorch"; the main job's SimCLR step on a 2-CPU machine, 62 ms
// quiet). With two busy processes of equal priority: libgomp's default
// (300 000 spins) 605-1490 ms, GOMP_SPINCOUNT=3000 213-297 ms, passive
// 176-268 ms (but 80 ms quiet). Beside one busy process at the lowest
// priority (a nice-19 background job): the default 67-75 ms, 3000 spins
// 181-220 ms. So bissl leaves the choice to the user and reports it.
// "OMP_WAIT_POLICY=passive", "GOMP_SPINCOUNT=3000" or "libgomp's default spin", for logs.
std::string wait_policy_summary();

namespace threads_detail {  // parsers, for the tests
// cgroup v2 cpu.max ("max 100000", "150000 100000"): CPUs, 0 = no quota.
double parse_cpu_max(const std::string& text);
// cgroup v1: cpu.cfs_quota_us ("-1" = none) over cpu.cfs_period_us.
double parse_cfs(const std::string& quota, const std::string& period);
// This process's cgroup path from /proc/self/cgroup: the v2 line ("0::/a")
// when v2, else the v1 line whose controllers include "cpu"; "" when none.
std::string cgroup_path(const std::string& proc_self_cgroup, bool v2);
// threads from the affinity count and the quota (0 = none).
int threads_for(int affinity, double quota);
}  // namespace threads_detail

}  // namespace bissl
