#include "engine/dist/comm.h"
#include "engine/threads.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/tensor.h"

#ifdef BISSL_WITH_MPI
#include <mpi.h>
#endif

namespace bissl::dist {

namespace {

class DoneRequest final : public Request {
 public:
  bool done() override { return true; }
  void wait() override {}
};

// One rank: every collective is the identity (or a copy).
class SelfComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* kind() const override { return "self"; }
  void all_reduce_sum(void*, int64_t, DType) override {}
  void all_reduce_max(void*, int64_t, DType) override {}
  void all_gather(const void* in, void* out, int64_t bytes) override {
    if (in != out && bytes > 0) std::memmove(out, in, size_t(bytes));
  }
  void reduce_scatter_sum(const void* in, void* out, int64_t n, DType t) override {
    if (in != out && n > 0) std::memmove(out, in, size_t(n) * dtype_size(t));
  }
  void broadcast(void*, int64_t, int root) override {
    BISSL_CHECK(root == 0, "broadcast: expected a root rank in [0, 1), found ", root);
  }
  void barrier() override {}
  std::unique_ptr<Request> all_reduce_sum_async(void*, int64_t, DType) override {
    return std::make_unique<DoneRequest>();
  }
  Comm& side() override { return *this; }
};

double g_comm_seconds = 0;  // wall time inside MPI calls (communication_seconds)

#ifdef BISSL_WITH_MPI
bool g_mpi_started = false;

// Times one MPI call into g_comm_seconds.
struct CommTimer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~CommTimer() { g_comm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

MPI_Datatype mpi_type(DType t, const char* what) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I64: return MPI_INT64_T;
    default: break;
  }
  throw Error(str(what, ": expected an f32, f64 or i64 buffer, found ", dtype_name(t)));
}

int count_of(int64_t n, const char* what) {
  BISSL_CHECK(n >= 0 && n <= INT_MAX, what, ": expected at most ", INT_MAX, " items per call, found ", n);
  return int(n);
}

class MpiComm final : public Comm {
 public:
  explicit MpiComm(MPI_Comm c) : c_(c) {
    MPI_Comm_rank(c_, &rank_);
    MPI_Comm_size(c_, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "mpi"; }
  void all_reduce_sum(void* buf, int64_t n, DType t) override { reduce(buf, n, t, MPI_SUM, "all_reduce_sum"); }
  void all_reduce_max(void* buf, int64_t n, DType t) override { reduce(buf, n, t, MPI_MAX, "all_reduce_max"); }
  void all_gather(const void* in, void* out, int64_t bytes) override {
    const int c = count_of(bytes, "all_gather");
    // In place when `in` is this rank's block of `out`.
    const void* src = in == static_cast<char*>(out) + int64_t(rank_) * bytes ? MPI_IN_PLACE : in;
    CommTimer timer;
    check(MPI_Allgather(src, c, MPI_BYTE, out, c, MPI_BYTE, c_), "MPI_Allgather");
  }
  void reduce_scatter_sum(const void* in, void* out, int64_t n, DType t) override {
    CommTimer timer;
    check(MPI_Reduce_scatter_block(in, out, count_of(n, "reduce_scatter_sum"), mpi_type(t, "reduce_scatter_sum"),
                                   MPI_SUM, c_),
          "MPI_Reduce_scatter_block");
  }
  void broadcast(void* buf, int64_t bytes, int root) override {
    BISSL_CHECK(root >= 0 && root < size_, "broadcast: expected a root rank in [0, ", size_, "), found ", root);
    // In pieces: MPI counts are ints.
    CommTimer timer;
    for (int64_t off = 0; off < bytes; off += INT_MAX) {
      const int c = int(std::min<int64_t>(INT_MAX, bytes - off));
      check(MPI_Bcast(static_cast<char*>(buf) + off, c, MPI_BYTE, root, c_), "MPI_Bcast");
    }
  }
  void barrier() override {
    CommTimer timer;
    check(MPI_Barrier(c_), "MPI_Barrier");
  }
  std::unique_ptr<Request> all_reduce_sum_async(void* buf, int64_t n, DType t) override {
    const MPI_Datatype dt = mpi_type(t, "all_reduce_sum_async");
    auto r = std::make_unique<MpiRequest>(rank_);
    CommTimer timer;
    for (int64_t off = 0; off < n; off += INT_MAX) {  // in pieces: MPI counts are ints
      const int c = int(std::min<int64_t>(INT_MAX, n - off));
      r->reqs.push_back(MPI_REQUEST_NULL);
      check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(buf) + off * int64_t(dtype_size(t)), c, dt, MPI_SUM, c_,
                           &r->reqs.back()),
            "MPI_Iallreduce");
    }
    return r;
  }
  Comm& side() override {
    if (!side_) {
      MPI_Comm d = MPI_COMM_NULL;
      {
        CommTimer timer;
        check(MPI_Comm_dup(c_, &d), "MPI_Comm_dup");
      }
      MPI_Comm_set_errhandler(d, MPI_ERRORS_RETURN);
      side_ = std::make_unique<MpiComm>(d);  // freed by MPI_Finalize
    }
    return *side_;
  }

 private:
  struct MpiRequest final : Request {
    explicit MpiRequest(int rank) : rank(rank) {}
    ~MpiRequest() override {
      // Still running: an exception is unwinding towards MPI_Abort. Freeing
      // a running collective's request is erroneous in MPI, and the buffer
      // may still be written: both stay until the job ends.
      if (!finished) static_cast<void>(new std::vector<MPI_Request>(std::move(reqs)));
    }
    bool done() override {
      if (finished) return true;
      CommTimer timer;
      int flag = 0;
      // MPI_REQUEST_NULL entries (finished pieces) count as complete.
      if (MPI_Testall(int(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        throw Error(str("[rank ", rank, "] MPI_Testall failed on a started all_reduce_sum"));
      return finished = flag != 0;
    }
    void wait() override {
      if (finished) return;
      CommTimer timer;
      if (MPI_Waitall(int(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        throw Error(str("[rank ", rank, "] MPI_Waitall failed on a started all_reduce_sum"));
      finished = true;
    }
    int rank;
    std::vector<MPI_Request> reqs;
    bool finished = false;
  };

  void reduce(void* buf, int64_t n, DType t, MPI_Op op, const char* what) {
    const MPI_Datatype dt = mpi_type(t, what);
    const int64_t step = INT_MAX;
    CommTimer timer;
    for (int64_t off = 0; off < n; off += step) {  // in pieces: MPI counts are ints
      const int c = int(std::min<int64_t>(step, n - off));
      check(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(buf) + off * int64_t(dtype_size(t)), c, dt, op, c_),
            "MPI_Allreduce");
    }
  }
  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(str("[rank ", rank_, "] ", call, " failed: ", std::string(msg, size_t(len))));
  }
  MPI_Comm c_;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<MpiComm> side_;
};
#endif

std::unique_ptr<Comm>& world_slot() {
  static std::unique_ptr<Comm> w = std::make_unique<SelfComm>();
  return w;
}
thread_local int t_current = kWorld;

}  // namespace

Comm& group(int id) {
  static SelfComm self;
  if (id == kSelf) return self;
  BISSL_CHECK(id == kWorld, "dist: expected group ", kWorld, " (world) or ", kSelf, " (self), found ", id);
  return *world_slot();
}
int rank() { return world().rank(); }
double communication_seconds() { return g_comm_seconds; }
int size() { return world().size(); }
bool built_with_mpi() {
#ifdef BISSL_WITH_MPI
  return true;
#else
  return false;
#endif
}

int current_group() { return t_current; }
CommScope::CommScope(int id) : prev_(t_current) {
  (void)group(id);  // checks the id
  t_current = id;
}
CommScope::~CommScope() { t_current = prev_; }

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

Session::Session(int& argc, char**& argv) {
  // OMP_NUM_THREADS, else the CPUs this process may use; then spin or sleep
  // at barriers, from a probe of how much of those CPUs this process gets
  // (may re-start the process). Once per process: tool_main does both
  // before it reads a config (engine/threads.h).
  if (thread_budget_summary().empty()) apply_thread_budget();
  choose_wait_policy(argv, launched_by_mpi());
  if (!launched_by_mpi()) return;
#ifdef BISSL_WITH_MPI
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "error: MPI_Init_thread failed (launched by mpirun, which this build needs to join)\n");
    std::exit(1);
  }
  g_mpi_started = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // errors become bissl::Error
  world_slot() = std::make_unique<MpiComm>(MPI_COMM_WORLD);
  // Threads per rank: OMP_NUM_THREADS when set; else the CPUs this process
  // may use (affinity, cgroup quota: engine/threads.h) shared by the ranks
  // on its machine, the same count on every rank (the fewest), so
  // replicated computations sum in the same chunks everywhere.
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (size() > 1 && !(env && *env)) {
    MPI_Comm local;
    int here = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
      MPI_Comm_size(local, &here);
      MPI_Comm_free(&local);
    }
    const int cores = std::max(1, cpu_budget().threads);
    double threads = -double(std::max(1, cores / std::max(here, 1)));
    world().all_reduce_max(&threads, 1, DType::F64);  // max of −t: the fewest
    omp_set_num_threads(int(-threads));
    set_thread_budget_summary(str(thread_budget_summary(), " shared by ", here, " ranks on this machine, the fewest "
                                  "over all ranks"));
  }
#else
  (void)argc, (void)argv;
  std::fprintf(stderr, "error: launched by mpirun, but this build has no MPI (configure with -DBISSL_MPI=ON and "
                       "libopenmpi-dev installed)\n");
  std::exit(1);
#endif
}

Session::~Session() {
#ifdef BISSL_WITH_MPI
  // Unwinding from an error with other ranks alive: MPI_Finalize would wait
  // for them, and they may wait for this rank.
  if (g_mpi_started && std::uncaught_exceptions() > 0 && size() > 1) abort_job(1);
  if (g_mpi_started) {
    world_slot() = std::make_unique<SelfComm>();
    MPI_Finalize();
    g_mpi_started = false;
  }
#endif
}

std::string rank_prefix() { return size() > 1 ? str("[rank ", rank(), "] ") : std::string(); }

void require_one_rank(const char* name) {
  if (size() == 1) return;
  std::fprintf(stderr, "%s%s: runs on one rank, started as %d; start it without mpirun or with -np 1\n",
               rank_prefix().c_str(), name, size());
  abort_job(1);
}

namespace {
int g_stderr_fd = 2;  // where print_error writes (a copy of stderr once quiet)
}

static thread_local bool t_on_root = false;  // inside on_root's fn on rank 0

void on_root(const std::function<void()>& fn) {
  Comm& c = group(current_group());
  if (c.size() == 1 || t_on_root) return fn();
  if (c.rank() == 0) {
    t_on_root = true;
    struct Reset {
      ~Reset() { t_on_root = false; }
    } reset;
    fn();
  }
  c.barrier();
}

void broadcast_string(std::string& s, int root) {
  Comm& c = group(current_group());
  if (c.size() == 1) return;
  int64_t n = int64_t(s.size());
  c.broadcast(&n, int64_t(sizeof n), root);
  s.resize(size_t(n));
  if (n > 0) c.broadcast(s.data(), n, root);
}

void quiet_other_ranks() {
  if (size() == 1 || is_root() || g_stderr_fd != 2) return;
  std::fflush(stdout);
  std::fflush(stderr);
  g_stderr_fd = ::dup(2);
  const int null = ::open("/dev/null", O_WRONLY);
  if (g_stderr_fd < 0 || null < 0) return;  // stays loud rather than failing
  ::dup2(null, 1);
  ::dup2(null, 2);
  ::close(null);
}

void print_error(const std::string& line) {
  const std::string s = rank_prefix() + line + "\n";
  std::fflush(stderr);
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(g_stderr_fd, s.data() + done, s.size() - done);
    if (n <= 0) break;
    done += size_t(n);
  }
}

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef BISSL_WITH_MPI
  if (g_mpi_started && size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

int Session::run(const std::function<int()>& body) {
  try {
    const int rc = body();
    if (rc != 0 && size() > 1) {  // the other ranks may be waiting in a collective
      print_error(str("exited with code ", rc, "; ending the job"));
      abort_job(rc);
    }
    return rc;
  } catch (const std::exception& e) {
    print_error(str("error: ", e.what()));
    if (size() == 1) return 1;  // nobody waits: MPI ends normally with the Session
    abort_job(1);
  }
}

// ---- tensors ----

DType wire_dtype(DType t) { return t == DType::BF16 ? DType::F32 : t; }

Tensor to_wire(const Tensor& x, DType wire) {
  Tensor h = x.device() == Device::CPU ? x.detach() : x.detach().to(Device::CPU);
  return h.dtype() == wire ? h : h.to(wire);
}

Tensor from_wire(const Tensor& h, DType t, Device d) {
  Tensor y = h.dtype() == t ? h : h.to(t);
  return d == Device::CPU ? y : y.to(d);
}

namespace {
// f(host buffer of t's values) on a CPU copy where needed, the result written back.
template <class F>
void on_host(Tensor& t, DType wire, F&& f) {
  Tensor h = to_wire(t, wire);
  const bool direct = h.raw() == t.raw();
  f(h);
  if (!direct) t.copy_(from_wire(h, t.dtype(), t.device()));
}

// The defined tensors of ts grouped by wire dtype (first appearance first),
// packed into one host buffer per dtype; f(buffer, count, dtype) runs on
// each and the results are written back.
template <class F>
void fused(const std::vector<Tensor>& ts, F&& f) {
  std::vector<DType> wires;
  for (const Tensor& t : ts)
    if (t.defined() && std::find(wires.begin(), wires.end(), wire_dtype(t.dtype())) == wires.end())
      wires.push_back(wire_dtype(t.dtype()));
  for (DType w : wires) {
    int64_t n = 0;
    for (const Tensor& t : ts)
      if (t.defined() && wire_dtype(t.dtype()) == w) n += t.numel();
    Tensor buf = empty({n}, w);
    char* at = static_cast<char*>(buf.raw());
    const size_t es = dtype_size(w);
    for (const Tensor& t : ts) {
      if (!t.defined() || wire_dtype(t.dtype()) != w) continue;
      Tensor h = to_wire(t, w);
      std::memcpy(at, h.raw(), size_t(t.numel()) * es);
      at += size_t(t.numel()) * es;
    }
    f(buf.raw(), n, w);
    at = static_cast<char*>(buf.raw());
    for (const Tensor& t : ts) {
      if (!t.defined() || wire_dtype(t.dtype()) != w) continue;
      copy_from_wire(t, at, w);
      at += size_t(t.numel()) * es;
    }
  }
}
}  // namespace

void copy_from_wire(const Tensor& t, const void* src, DType wire) {
  const size_t bytes = size_t(t.numel()) * dtype_size(wire);
  if (t.device() == Device::CPU && t.dtype() == wire) {
    std::memcpy(t.raw(), src, bytes);
  } else {
    Tensor h = empty(t.shape(), wire);
    std::memcpy(h.raw(), src, bytes);
    Tensor(t).copy_(from_wire(h, t.dtype(), t.device()));
  }
}

void all_reduce_sum_(Tensor& t, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) return;
  on_host(t, wire_dtype(t.dtype()), [&](Tensor& h) { c.all_reduce_sum(h.raw(), h.numel(), h.dtype()); });
}
void all_reduce_max_(Tensor& t, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) return;
  on_host(t, wire_dtype(t.dtype()), [&](Tensor& h) { c.all_reduce_max(h.raw(), h.numel(), h.dtype()); });
}
void broadcast_(Tensor& t, int root, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) {
    c.broadcast(nullptr, 0, root);  // checks the root
    return;
  }
  on_host(t, t.dtype(), [&](Tensor& h) { c.broadcast(h.raw(), int64_t(h.nbytes()), root); });
}
void all_reduce_sum_(const std::vector<Tensor>& ts, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) return;
  fused(ts, [&](void* buf, int64_t n, DType w) { c.all_reduce_sum(buf, n, w); });
}
void broadcast_(const std::vector<Tensor>& ts, int root, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) {
    c.broadcast(nullptr, 0, root);  // checks the root
    return;
  }
  // Broadcast moves bytes; BF16 travels as F32 like the sums (exactly).
  fused(ts, [&](void* buf, int64_t n, DType w) { c.broadcast(buf, n * int64_t(dtype_size(w)), root); });
}
double row_share(int64_t local_rows, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) return 1.0;
  double all = double(local_rows);
  c.all_reduce_sum(&all, 1, DType::F64);
  BISSL_CHECK(all > 0, "row_share: the ranks hold no rows at all");
  return double(local_rows) / all;
}
RowWindow row_window(int64_t local_rows, int g) {
  Comm& c = group(g < 0 ? current_group() : g);
  if (c.size() == 1) return {0, local_rows};
  std::vector<int64_t> rows(size_t(c.size()));
  c.all_gather(&local_rows, rows.data(), int64_t(sizeof local_rows));
  RowWindow w;
  for (int r = 0; r < c.size(); ++r) {
    if (r < c.rank()) w.offset += rows[size_t(r)];
    w.total += rows[size_t(r)];
  }
  return w;
}
bool is_group_root(int g) { return group(g < 0 ? current_group() : g).rank() == 0; }
double all_reduce_sum(double v, int g) {
  group(g < 0 ? current_group() : g).all_reduce_sum(&v, 1, DType::F64);
  return v;
}
double all_reduce_max(double v, int g) {
  group(g < 0 ? current_group() : g).all_reduce_max(&v, 1, DType::F64);
  return v;
}

}  // namespace bissl::dist
