// The default thread count (engine/threads.h): the cgroup quota and
// affinity parsers on the texts the kernel writes, and this machine's budget.
#include <doctest/doctest.h>

#include <omp.h>
#include <sched.h>

#include <atomic>
#include <thread>

#include "engine/backend.h"
#include "engine/threads.h"

using namespace bissl;
namespace td = bissl::threads_detail;

TEST_CASE("cgroup v2 cpu.max: a quota in CPUs, none for max") {
  CHECK(td::parse_cpu_max("max 100000\n") == 0);
  CHECK(td::parse_cpu_max("200000 100000\n") == doctest::Approx(2.0));
  CHECK(td::parse_cpu_max("150000 100000") == doctest::Approx(1.5));
  CHECK(td::parse_cpu_max("50000 100000") == doctest::Approx(0.5));
  CHECK(td::parse_cpu_max("") == 0);
  CHECK(td::parse_cpu_max("garbage") == 0);
}

TEST_CASE("cgroup v1 cfs quota over period; -1 is none") {
  CHECK(td::parse_cfs("-1\n", "100000\n") == 0);
  CHECK(td::parse_cfs("400000\n", "100000\n") == doctest::Approx(4.0));
  CHECK(td::parse_cfs("", "") == 0);
}

TEST_CASE("the process's cgroup path from /proc/self/cgroup, v2 and v1") {
  const std::string v2 = "0::/user.slice/job-7\n";
  CHECK(td::cgroup_path(v2, true) == "/user.slice/job-7");
  const std::string v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
  CHECK(td::cgroup_path(v1, false) == "/docker/abc");
  CHECK(td::cgroup_path(v1, true) == "/");
  CHECK(td::cgroup_path("3:cpuset:/x\n", false) == "");
}

TEST_CASE("threads: the affinity count, cut to the whole CPUs of a quota, at least 1") {
  CHECK(td::threads_for(64, 0) == 64);  // no quota
  CHECK(td::threads_for(64, 2) == 2);   // docker --cpus=2 on a 64-core host
  CHECK(td::threads_for(64, 1.5) == 1);
  CHECK(td::threads_for(64, 0.5) == 1);
  CHECK(td::threads_for(2, 8) == 2);  // a quota above the mask changes nothing
}

TEST_CASE("this machine's budget, and OMP_NUM_THREADS wins") {
  const CpuBudget b = cpu_budget();
  MESSAGE("this machine: ", b.threads, " threads (", b.why, ")");
  CHECK(b.affinity >= 1);
  CHECK(b.threads >= 1);
  CHECK(b.threads <= b.affinity);
  const int before = omp_get_max_threads();
  const std::string line = apply_thread_budget();
  MESSAGE(line);
  CHECK(line.find("threads, from ") != std::string::npos);
  CHECK(backend_summary().find(thread_budget_summary()) != std::string::npos);
  omp_set_num_threads(before);
}

TEST_CASE("the wait policy's verdict: contended below 0.8 of the CPUs") {
  CHECK_FALSE(td::contended(1.0));
  CHECK_FALSE(td::contended(0.85));  // quiet, with the odd interrupt
  CHECK(td::contended(2.0 / 3));     // one busy neighbour on two CPUs
  CHECK(td::contended(0.5));         // two
}

TEST_CASE("BISSL_THREADS=probe's count: the threads that got their CPU, at least one") {
  CHECK(td::uncontended_count({1.0, 0.99}) == 2);
  CHECK(td::uncontended_count({1.0, 0.5}) == 1);   // one busy neighbour on two CPUs
  CHECK(td::uncontended_count({0.5, 0.45}) == 1);  // two: still one thread
  CHECK(td::uncontended_count({0.9, 0.3, 0.95, 0.85}) == 3);
}

TEST_CASE("the probe: a share of the CPUs, and about half of one CPU shared with a spinning thread") {
  const double share = measure_cpu_share(2, 20);
  MESSAGE("this machine now: 2 threads ran ", share * 100, " % of a 20 ms probe");
  CHECK(share > 0);
  CHECK(share <= 1.1);
  // One CPU for this thread, a spinner beside it (it inherits the mask),
  // then a one-thread probe on the same CPU: it gets about half.
  cpu_set_t before, one;
  REQUIRE(sched_getaffinity(0, sizeof before, &before) == 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &before)) ++cpu;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  std::atomic<bool> stop{false};
  std::thread spinner([&stop] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  const double shared = measure_cpu_share(1, 200);
  stop = true;
  spinner.join();
  REQUIRE(sched_setaffinity(0, sizeof before, &before) == 0);
  MESSAGE("one CPU shared with a spinner: ", shared * 100, " %");
  CHECK(td::contended(shared));
}
