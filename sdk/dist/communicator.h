// Collectives between the ranks of a data-parallel job (issue: beyond one machine). The engine
// never moves bytes between processes itself: MPI does (OpenMPI from Debian; mpi_communicator.cpp),
// and on GPUs NCCL will, with its unique id broadcast over this interface.
//
// Every collective is called by every rank of the communicator in the same order with the same
// counts (where a count is stated), as MPI requires; a rank that stops calling makes the others
// wait until the collective times out (REASON_DIST_TIMEOUT_S, default 1800 s), after which the
// process aborts the whole job (MPI_Abort) with an error naming the collective: waiting forever on
// a dead peer is never an option. The limit also bounds legitimate gaps between collectives (a
// rank's share of rejection sampling or evaluation, rank 0 writing a checkpoint): set it above
// the longest of them for large models.
//
// Threads: a Communicator is used by one thread at a time (the trainer's, or during a step's
// backward the gradient reducer's communication thread: see train/gradient_reducer.h).
// Ownership: shared by whoever holds it (Trainer, pipeline); the MPI world stays initialised
// until the process exits.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace reason {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums over the ranks of v (the same count on every rank).
  virtual void allreduce_sum(std::span<float> v) = 0;
  virtual void allreduce_sum(std::span<double> v) = 0;
  virtual void allreduce_sum(std::span<int64_t> v) = 0;
  // In-place element-wise maximum (minimum: negate).
  virtual void allreduce_max(std::span<double> v) = 0;
  // Every rank's `mine`, concatenated in rank order (counts may differ between ranks).
  virtual std::vector<float> allgather(std::span<const float> mine) = 0;
  // Root's v to every rank (the same count on every rank).
  virtual void broadcast(std::span<float> v, int root) = 0;
  // Root's bytes to every rank (sizes may differ; the others' are replaced).
  virtual void broadcast(std::string& bytes, int root) = 0;
  virtual void barrier() = 0;
  // What the transport is ("mpi", "single").
  virtual const char* name() const = 0;
  // Whether a thread other than the one that made the communicator may call it (never two at
  // once): MPI initialised at MPI_THREAD_SERIALIZED or above. The gradient reducer's communication
  // thread needs it to overlap the all-reduce with the backward pass.
  virtual bool serialized_threads() const { return true; }
};

// REASON_DIST_TIMEOUT_S (default 1800): how long a collective may wait for the other ranks.
double collective_timeout_seconds();

// Every rank's strings, concatenated in rank order (each rank's list broadcast in turn: for
// results a stage gathers once, such as completions and evaluation details, not for hot paths).
std::vector<std::string> allgather_strings(Communicator& c, const std::vector<std::string>& mine);

// This rank's share [first, last) of n items cut into contiguous ranges, rank r taking
// [n r / R, n (r + 1) / R) (in units of `unit` items: whole groups).
std::pair<size_t, size_t> rank_share(const Communicator& c, size_t n, size_t unit = 1);

// Runs fn on rank 0 only (files only one rank writes: checkpoints, metrics, plots) and then tells
// every rank how it went: an exception on rank 0 is rethrown, with its message, on every rank, so
// no rank waits for a peer that failed. Every rank calls it at the same point.
void on_rank0(Communicator& c, const std::function<void()>& fn);

// Runs a check of this rank's own inputs and makes its outcome the job's: if it throws on any
// rank, every rank throws (the failing rank its own error, the others "rank R: ..."), so a bad
// sample on one rank ends the step everywhere at once instead of leaving the others waiting in
// the next collective. Every rank calls it at the same point (one small collective).
void agree(Communicator& c, const std::function<void()>& check);

// Ends every process of this MPI job now (MPI_Abort) when this process is one rank of several
// ranks of an initialised MPI world; returns otherwise. For a program's last error path: exiting
// normally would run MPI_Finalize, which waits for ranks that may be waiting for this one.
void abort_job_if_distributed(int code);

// A job of one rank: every collective is the identity. What a trainer uses without MPI.
std::shared_ptr<Communicator> single_process();

// Whether this library was built with MPI (find_package(MPI) found it).
bool built_with_mpi();

// Whether this process was started by an MPI launcher (mpirun / mpiexec / srun with PMI): the
// launcher's rank variables are set. A process started alone needs no MPI and gets none.
bool launched_by_mpi();

// MPI_COMM_WORLD (the library calls MPI_Init_thread once if the program has not, and
// MPI_Finalize at exit if it did). Throws reason::Error(Unsupported) when built without MPI.
std::shared_ptr<Communicator> mpi_world();

// Ends the MPI world if mpi_world() initialised it and it still runs (MPI_Finalize, as at exit);
// nothing otherwise. mpi_world() fails (Unsupported) afterwards: MPI cannot start again.
void finalize_mpi_world();

// A communicator the program owns: `mpi_comm` points at its MPI_Comm (the library duplicates
// it, so the caller's stays free for its own traffic). Throws when built without MPI or when
// MPI is not initialised.
std::shared_ptr<Communicator> mpi_communicator(const void* mpi_comm);

// The job a process belongs to: mpi_world() when launched by MPI, else single_process().
std::shared_ptr<Communicator> default_communicator();

}  // namespace reason
