#pragma once
// Processes working as one job (docs/distributed.md): ranks, communicators,
// and the job's start and end.
//
// A job launched by `mpirun -np N` has N ranks; anything else is one rank.
// Communicators are numbered groups: 0 = the world (every rank), 1 = this
// rank alone ("self": what a single-process reference computes under, see
// CommScope). The collectives here move host buffers and are not recorded
// on the tape; engine/ops.h has the differentiable ones (all_reduce_sum,
// all_gather, reduce_scatter_sum, broadcast), which call these.
//
// Rules every caller keeps (else ranks wait for each other forever):
// whether a rank calls a collective depends only on facts every rank shares
// (program structure, global shapes, replicated values), never on its local
// data; and every rank calls the same collectives in the same order.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace bissl {
class Tensor;
}

namespace bissl::dist {

// A collective started without waiting for it (all_reduce_sum_async): the
// buffer must stay untouched and alive until done() says true or wait()
// returns. MPI without an asynchronous progress thread (Debian's OpenMPI)
// moves the data only inside MPI calls: done() is such a call, so callers
// ask it now and then while they compute (GradReducer does, once per node
// of the backward). A request that is destroyed while still running (an
// error on its way to ending the job: MPI has no safe way to cancel a
// collective) is left to the job's end; whoever owns the buffer must then
// keep it alive too.
class Request {
 public:
  virtual ~Request() = default;
  virtual bool done() = 0;
  virtual void wait() = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* kind() const = 0;  // "self" | "mpi"
  // Host buffers; n counts elements of dtype t (F32, F64 or I64).
  virtual void all_reduce_sum(void* buf, int64_t n, DType t) = 0;
  virtual void all_reduce_max(void* buf, int64_t n, DType t) = 0;
  // out holds size() blocks of `bytes` each, in rank order.
  virtual void all_gather(const void* in, void* out, int64_t bytes) = 0;
  // in holds size() blocks of n elements; out gets the sum of every rank's
  // block number rank().
  virtual void reduce_scatter_sum(const void* in, void* out, int64_t n, DType t) = 0;
  virtual void broadcast(void* buf, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // all_reduce_sum, started: every rank must start the same ones in the same
  // order (like any collective); the sums may differ from all_reduce_sum's
  // in the last bits with 3 ranks or more (MPI may pick another summation
  // order), and are the same on every rank.
  virtual std::unique_ptr<Request> all_reduce_sum_async(void* buf, int64_t n, DType t) = 0;
  // The same ranks on a communicator of their own, for collectives that
  // run beside this one's (the gradient buckets' sums during a backward
  // whose VJPs call collectives here): MPI orders collectives per
  // communicator, so the two streams never have to meet in one order.
  // Made on first use, which is a collective call on every rank.
  virtual Comm& side() = 0;
};

// The groups: 0 = world, 1 = self.
constexpr int kWorld = 0, kSelf = 1;
Comm& group(int id);
inline Comm& world() { return group(kWorld); }
int rank();  // in the world
int size();
inline bool is_root() { return rank() == 0; }
// Wall time this rank has spent inside MPI calls (waiting for the others
// included): the communication share of a run.
double communication_seconds();
// Whether this build can run several ranks (MPI compiled in).
bool built_with_mpi();

// The group the differentiable collectives use when no group is named (the
// world unless a CommScope says otherwise): a single-process reference
// computed on every rank runs under CommScope(kSelf).
int current_group();
class CommScope {
 public:
  explicit CommScope(int id);
  ~CommScope();
  CommScope(const CommScope&) = delete;
  CommScope& operator=(const CommScope&) = delete;

 private:
  int prev_;
};

// The job, for main(): starts MPI when mpirun launched this process (its
// environment says so; a plain start is one rank and never touches MPI) and
// ends it. On several ranks without OMP_NUM_THREADS each rank takes its
// share of the machine's cores (cores / ranks on the machine, the same on
// every rank). run() calls the body; an exception on any rank prints
// "[rank r] error: …" (the rank only when there are several) and ends the
// whole job with exit code 1 at once (MPI_Abort), rather than leaving the
// other ranks waiting in a collective.
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  int run(const std::function<int()>& body);
};
// True when the environment says mpirun (or another PMI launcher) started us.
bool launched_by_mpi();
// Ends every rank of the job with this exit code (std::exit with one rank).
[[noreturn]] void abort_job(int code);
// "[rank r] " with several ranks, "" with one: the prefix of messages.
std::string rank_prefix();
// For an executable that runs on one rank only: with several, every rank
// says so and the job ends with exit code 1.
void require_one_rank(const char* name);
// Files and output on several ranks (docs/distributed.md): every rank runs
// the same program on the same files, and rank 0 alone writes.
//  - on_root(fn): a file write (or another effect on shared state) that
//    every rank reaches at the same point: rank 0 runs fn, then every rank
//    waits for it (a world barrier), so the file is complete before any
//    rank reads it. One rank: fn(). An exception on rank 0 ends the job
//    (Session / tool_main), not a hang. The project's writers call it
//    (files::write_text_atomic, io::save_safetensors, the SVG writer).
//  - quiet_other_ranks(): on ranks > 0 of a job of several, stdout and
//    stderr go to /dev/null (progress is rank 0's); print_error still
//    reaches the terminal, with the rank prefix.
// (Both act on the current group: under CommScope(kSelf) a rank writes its
// own files, as when ranks run separate one-process jobs side by side.)
void on_root(const std::function<void()>& fn);  // nested calls in fn: fn's own, no barrier
// s as rank `root` of the current group holds it, on every rank of it.
void broadcast_string(std::string& s, int root = 0);
void quiet_other_ranks();
void print_error(const std::string& line);  // "<rank prefix><line>\n" on the real stderr

// In-place, untracked collectives on tensors of any device (CUDA tensors
// pass through host memory), for values every rank needs: losses to check,
// metrics, replicated statistics. BF16 is summed in F32.
void all_reduce_sum_(Tensor& t, int group = -1);
void all_reduce_max_(Tensor& t, int group = -1);
void broadcast_(Tensor& t, int root = 0, int group = -1);
double all_reduce_sum(double v, int group = -1);
double all_reduce_max(double v, int group = -1);

// The same on a list, fused: one host buffer and one collective per wire
// dtype, in list order (gradients, BN buffers). Undefined tensors are
// skipped; every rank must pass the same shapes, dtypes and gaps.
void all_reduce_sum_(const std::vector<Tensor>& ts, int group = -1);
void broadcast_(const std::vector<Tensor>& ts, int root = 0, int group = -1);

// local_rows over the rows of every rank of the group: the factor that turns
// a mean over this rank's rows into its share of the mean over the group's
// batch (the shares add up to the whole batch's mean). Exactly 1 on one
// rank; with several, one scalar collective (local batches may differ).
double row_share(int64_t local_rows, int group = -1);
// Where this rank's rows sit in the group's batch when the ranks hold
// consecutive blocks in rank order (the loader's layout): random draws made
// per row (MAE's masks, drop path) are drawn for `total` rows on every rank
// and sliced at [offset, offset + local_rows), so N ranks draw exactly what
// one process draws. One rank: {0, local_rows}, no collective.
struct RowWindow {
  int64_t offset = 0, total = 0;
};
RowWindow row_window(int64_t local_rows, int group = -1);
// Whether this rank is rank 0 of the group: where replicated terms (the
// proximal λ·½‖θD − θP‖², counted once in a sum over ranks) and files go.
bool is_group_root(int group = -1);

// Host staging of the collectives (here and in engine/ops/collective.cpp):
// what travels is F32, F64 or I64; BF16 travels as F32.
DType wire_dtype(DType t);
// x's values in host memory as `wire` (x itself when it already is that).
Tensor to_wire(const Tensor& x, DType wire);
// h converted back to dtype t on device d (h itself when it already is).
Tensor from_wire(const Tensor& h, DType t, Device d);
// t's values replaced by t.numel() values of dtype `wire` at host address
// src (t contiguous, any device and float dtype).
void copy_from_wire(const Tensor& t, const void* src, DType wire);

}  // namespace bissl::dist
