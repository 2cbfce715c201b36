// single_process(), launched_by_mpi(), default_communicator(); the MPI ones are in
// mpi_communicator.cpp, or below as errors when the library is built without MPI.
#include "dist/communicator.h"

#include <cstdlib>

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

std::shared_ptr<Communicator> default_communicator() { return launched_by_mpi() ? mpi_world() : single_process(); }

#ifndef REASON_HAVE_MPI
bool built_with_mpi() { return false; }
std::shared_ptr<Communicator> mpi_world() {
  fail(ErrorCode::Unsupported, "this libreason was built without MPI: data-parallel runs need a build with libopenmpi-dev");
}
std::shared_ptr<Communicator> mpi_communicator(const void*) { return mpi_world(); }
#endif

}  // namespace reason
