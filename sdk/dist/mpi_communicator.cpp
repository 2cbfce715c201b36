// Communicator over MPI (built when CMake finds MPI; Debian's libopenmpi-dev). Each collective is
// started non-blocking and polled against the communicator's deadline, so a rank that died or hung
// makes the others abort the job with a message naming the collective instead of waiting forever
// (MPI itself has no timeouts); mpirun then ends every rank and names the one that failed first.
#ifdef REASON_HAVE_MPI
// The C API only: OpenMPI and MPICH otherwise pull in their deprecated C++ bindings (and their library).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"
#include "dist/communicator.h"

namespace reason {

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail(ErrorCode::Internal, "MPI {} failed: {}", what, std::string(msg, size_t(len)));
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm parent) : timeout_s_(collective_timeout_seconds()) {
    check(MPI_Comm_dup(parent, &comm_), "Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {  // the duplicate, unless MPI is already finalised
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(std::span<float> v) override { allreduce(v.data(), v.size(), MPI_FLOAT, MPI_SUM, "allreduce(f32)"); }
  void allreduce_sum(std::span<double> v) override { allreduce(v.data(), v.size(), MPI_DOUBLE, MPI_SUM, "allreduce(f64)"); }
  void allreduce_sum(std::span<int64_t> v) override { allreduce(v.data(), v.size(), MPI_INT64_T, MPI_SUM, "allreduce(i64)"); }
  void allreduce_max(std::span<double> v) override { allreduce(v.data(), v.size(), MPI_DOUBLE, MPI_MAX, "allreduce(max)"); }

  std::vector<float> allgather(std::span<const float> mine) override {
    if (mine.size() > size_t(INT32_MAX)) fail(ErrorCode::InvalidArgument, "allgather: {} values exceed MPI's int count", mine.size());
    int n = int(mine.size());
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    MPI_Request r;
    check(MPI_Iallgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_, &r), "allgather(counts)");
    wait(r, "allgather(counts)");
    int64_t total64 = 0;
    for (int c : counts) total64 += c;
    if (total64 > INT32_MAX) fail(ErrorCode::InvalidArgument, "allgather: {} values in all exceed MPI's int count", total64);
    int total = 0;
    for (int i = 0; i < size_; ++i) displs[size_t(i)] = total, total += counts[size_t(i)];
    std::vector<float> all(static_cast<size_t>(total));
    check(MPI_Iallgatherv(mine.data(), n, MPI_FLOAT, all.data(), counts.data(), displs.data(), MPI_FLOAT, comm_, &r),
          "allgather");
    wait(r, "allgather");
    return all;
  }
  void broadcast(std::span<float> v, int root) override {
    for (size_t off = 0; off < v.size(); off += kMaxCount) {
      MPI_Request r;
      check(MPI_Ibcast(v.data() + off, int(std::min(kMaxCount, v.size() - off)), MPI_FLOAT, root, comm_, &r), "broadcast");
      wait(r, "broadcast");
    }
  }
  void broadcast(std::string& bytes, int root) override {
    int64_t n = int64_t(bytes.size());
    MPI_Request r;
    check(MPI_Ibcast(&n, 1, MPI_INT64_T, root, comm_, &r), "broadcast(size)");
    wait(r, "broadcast(size)");
    bytes.resize(size_t(n));
    for (size_t off = 0; off < bytes.size(); off += kMaxCount) {
      check(MPI_Ibcast(bytes.data() + off, int(std::min(kMaxCount, bytes.size() - off)), MPI_BYTE, root, comm_, &r),
            "broadcast");
      wait(r, "broadcast");
    }
  }
  void barrier() override {
    MPI_Request r;
    check(MPI_Ibarrier(comm_, &r), "barrier");
    wait(r, "barrier");
  }
  const char* name() const override { return "mpi"; }
  bool serialized_threads() const override {
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_SERIALIZED;
  }

 private:
  static constexpr size_t kMaxCount = size_t(1) << 30;  // MPI counts are int

  void allreduce(void* p, size_t n, MPI_Datatype t, MPI_Op op, const char* what) {
    int bytes = 0;
    MPI_Type_size(t, &bytes);
    for (size_t off = 0; off < n; off += kMaxCount) {
      MPI_Request r;
      check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(p) + off * size_t(bytes), int(std::min(kMaxCount, n - off)), t,
                           op, comm_, &r),
            what);
      wait(r, what);
    }
  }
  // Polls r until it completes; past the deadline the job is aborted (the peers cannot be
  // recovered: a collective that never completes leaves MPI's state undefined).
  void wait(MPI_Request& r, const char* what) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    for (int spins = 0;; ++spins) {
      int done = 0;
      check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 20));
      if (std::chrono::duration<double>(clock::now() - t0).count() > timeout_s_) {
        log_message(LogLevel::Error,
                    fmt::format("libreason: rank {} of {}: MPI {} did not complete within {:.0f} s (REASON_DIST_TIMEOUT_S): "
                                "another rank died or hangs; aborting the job",
                                rank_, size_, what, timeout_s_));
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
};

std::once_flag g_init;

void finalize_at_exit() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

std::shared_ptr<Communicator> g_world;  // mpi_world()'s (freed before a finalize_mpi_world())
bool g_we_initialised = false;

}  // namespace

bool built_with_mpi() { return true; }

std::shared_ptr<Communicator> mpi_world() {
  std::call_once(g_init, [] {
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) return;
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "Init_thread");
    if (provided < MPI_THREAD_SERIALIZED)
      fail(ErrorCode::Unsupported, "MPI provides thread level {} below MPI_THREAD_SERIALIZED, which libreason needs", provided);
    g_we_initialised = true;
    std::atexit(finalize_at_exit);
  });
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) fail(ErrorCode::Unsupported, "MPI was finalised (reason_mpi_finalize): a process cannot start it again");
  static std::mutex mu;
  std::lock_guard lk(mu);
  if (!g_world) g_world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  return g_world;
}

void finalize_mpi_world() {
  int inited = 0, fin = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&fin);
  if (!g_we_initialised || !inited || fin) return;
  g_world.reset();  // frees its duplicate while MPI runs (a trainer still holding it frees nothing later)
  MPI_Finalize();
}

void abort_job_if_distributed(int code) {
  int inited = 0, fin = 0, size = 1;
  MPI_Initialized(&inited);
  MPI_Finalized(&fin);
  if (!inited || fin) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

std::shared_ptr<Communicator> mpi_communicator(const void* mpi_comm) {
  if (!mpi_comm) fail(ErrorCode::InvalidArgument, "mpi_communicator: the MPI_Comm pointer is null");
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) fail(ErrorCode::InvalidArgument, "mpi_communicator: MPI is not initialised (call MPI_Init first)");
  return std::make_shared<MpiCommunicator>(*static_cast<const MPI_Comm*>(mpi_comm));
}

}  // namespace reason
#endif  // REASON_HAVE_MPI
