// single_process(), launched_by_mpi(), default_communicator(); the MPI ones are in
// mpi_communicator.cpp, or below as errors when the library is built without MPI.
#include "dist/communicator.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace reason {

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(std::span<float>) override {}
  void allreduce_sum(std::span<double>) override {}
  void allreduce_sum(std::span<int64_t>) override {}
  void allreduce_max(std::span<double>) override {}
  std::vector<float> allgather(std::span<const float> mine) override { return {mine.begin(), mine.end()}; }
  void broadcast(std::span<float>, int) override {}
  void broadcast(std::string&, int) override {}
  void barrier() override {}
  const char* name() const override { return "single"; }
};

}  // namespace

std::shared_ptr<Communicator> single_process() { return std::make_shared<SingleProcess>(); }

bool launched_by_mpi() {
  // OpenMPI's mpirun, MPICH / Hydra's mpiexec (PMI), PMIx launchers (srun --mpi=pmix).
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

double collective_timeout_seconds() {
  const char* s = std::getenv("REASON_DIST_TIMEOUT_S");
  const double v = s ? std::atof(s) : 0.0;
  return v > 0 ? v : 1800.0;
}

std::vector<std::string> allgather_strings(Communicator& c, const std::vector<std::string>& mine) {
  if (c.size() <= 1) return mine;
  std::vector<std::string> all;
  for (int root = 0; root < c.size(); ++root) {
    std::string bytes;  // length-prefixed strings
    if (root == c.rank())
      for (const std::string& s : mine) {
        const uint64_t n = s.size();
        bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
        bytes += s;
      }
    c.broadcast(bytes, root);
    for (size_t at = 0; at + sizeof(uint64_t) <= bytes.size();) {
      uint64_t n = 0;
      std::memcpy(&n, bytes.data() + at, sizeof n);
      at += sizeof n;
      if (n > bytes.size() - at) fail(ErrorCode::Internal, "allgather_strings: a truncated message from rank {}", root);
      all.emplace_back(bytes.data() + at, size_t(n));
      at += size_t(n);
    }
  }
  return all;
}

std::pair<size_t, size_t> rank_share(const Communicator& c, size_t n, size_t unit) {
  const size_t units = n / std::max<size_t>(1, unit), r = size_t(c.rank()), R = size_t(c.size());
  return {units * r / R * unit, units * (r + 1) / R * unit};
}

namespace {

// Runs fn and returns what it threw as "CODE:message" ("" when it returned), for other ranks.
std::string run_caught(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return std::to_string(int(e.code())) + ":" + e.what();
  } catch (const std::exception& e) {
    return std::to_string(int(ErrorCode::Internal)) + ":" + e.what();
  }
  return {};
}

// Throws the error run_caught encoded, its message after `prefix`.
[[noreturn]] void rethrow(const std::string& encoded, const std::string& prefix) {
  const size_t colon = encoded.find(':');
  throw Error(ErrorCode(std::stoi(encoded.substr(0, colon))), prefix + encoded.substr(colon + 1));
}

}  // namespace

void on_rank0(Communicator& c, const std::function<void()>& fn) {
  std::string err = c.rank() == 0 ? run_caught(fn) : std::string();
  if (c.size() > 1) c.broadcast(err, 0);
  if (!err.empty()) rethrow(err, c.rank() == 0 ? "" : "rank 0 failed: ");
}

void agree(Communicator& c, const std::function<void()>& check) {
  const std::string mine = run_caught(check);
  const std::vector<std::string> all = c.size() > 1 ? allgather_strings(c, {mine}) : std::vector<std::string>{};
  if (!mine.empty()) rethrow(mine, "");
  for (size_t r = 0; r < all.size(); ++r)
    if (!all[r].empty()) rethrow(all[r], fmt::format("rank {}: ", r));
}

std::shared_ptr<Communicator> default_communicator() { return launched_by_mpi() ? mpi_world() : single_process(); }

#ifndef REASON_HAVE_MPI
bool built_with_mpi() { return false; }
std::shared_ptr<Communicator> mpi_world() {
  fail(ErrorCode::Unsupported, "this libreason was built without MPI: data-parallel runs need a build with libopenmpi-dev");
}
std::shared_ptr<Communicator> mpi_communicator(const void*) { return mpi_world(); }
void abort_job_if_distributed(int) {}
void finalize_mpi_world() {}
#endif

}  // namespace reason
