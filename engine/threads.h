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
#include <vector>

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
// beside PyTorch"; the main job's SimCLR step on a 2-CPU machine):
//  - quiet, or beside low-priority work (a nice-19 job): libgomp's default
//    spin is fastest (62-78 ms); passive waits cost every region a wake-up
//    (98-121 ms);
//  - beside busy processes of equal priority: a spinning thread burns the
//    time slice its partner needs, and each region waits for a descheduled
//    thread. Two busy neighbours: the default 490-1490 ms, passive 160-268.
// So choose_wait_policy() measures at start what share of its CPUs this
// process gets, and re-starts itself with OMP_WAIT_POLICY=passive when
// the share says they are contended. OMP_WAIT_POLICY or GOMP_SPINCOUNT in
// the environment is the user's choice and is never overridden;
// BISSL_WAIT_PROBE=0 turns the probe off.
//
// BISSL_THREADS=probe (opt-in) also cuts the thread count, when the CPUs
// are contended, to the probe's threads that got their CPU (at least 1):
// beside one busy process on 2 CPUs the step then runs on one thread at
// about its quiet one-thread time (84-87 ms against 156-163 ms with two
// threads waiting passively). Not the default: in default numerics the
// thread count changes a run's bits (docs/performance.md, "Portable
// numerics"), so the results would depend on the load at start.
//
// Called after apply_thread_budget() by tool_main (before it reads a config,
// which a re-start would otherwise read twice) and by dist::Session, so by
// every bissl-* executable and test_dist (not the other doctest executables
// nor the fuzz targets); the first call decides, later ones return. Load
// that starts after the probe does not change the policy. Not probed with
// one thread (nothing waits at a barrier) or under mpirun (the ranks
// starting beside each other are each other's load); set the variable
// there. The probe runs no more threads than the affinity mask has CPUs.
// Never throws: no thread for the probe, or a failed re-start, keeps
// libgomp's default. (The re-started process unsets OMP_WAIT_POLICY once
// libgomp has read it at load, so that processes it starts probe for
// themselves; an OpenMP runtime that read it later, LLVM's libomp, would
// miss it. The build links libgomp.)
void choose_wait_policy(char** argv, bool under_mpi);
// The least share of its CPU that any of `threads` spinning threads got
// over the last three quarters of `ms` milliseconds: about 1 when the CPUs
// are this process's (or shared with low-priority work only), 1/2 where a
// busy process of equal priority shares a CPU. The threads are pinned one
// per CPU when there are as many as the affinity mask has CPUs.
double measure_cpu_share(int threads, double ms);
// Each thread's share (the probe's measurement; measure_cpu_share is the least).
std::vector<double> measure_cpu_shares(int threads, double ms);
// "OMP_WAIT_POLICY=passive (chosen at start: the least of 2 threads ran
// 50 % of a 40 ms probe)", "GOMP_SPINCOUNT=3000", "libgomp's default spin
// (the least of 2 threads ran 99 % of a 40 ms probe)" and so on, for logs.
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
// The probe's verdict: a share below this means contended CPUs.
constexpr double kContendedShare = 0.8;
inline bool contended(double share) { return share < kContendedShare; }
// BISSL_THREADS=probe's count: the threads that were not contended, at least 1.
inline int uncontended_count(const std::vector<double>& shares) {
  int n = 0;
  for (double s : shares) n += contended(s) ? 0 : 1;
  return n > 0 ? n : 1;
}
}  // namespace threads_detail

}  // namespace bissl
