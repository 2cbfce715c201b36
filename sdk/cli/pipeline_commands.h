// The `reason pipeline run|check` and `reason eval` subcommands (the R1 recipe and its
// evaluation protocol), kept apart from the inference commands in main.cpp.
#pragma once
#include <memory>

#include <CLI/CLI.hpp>

namespace reason::cli {

class PipelineCommands {
 public:
  // Registers the subcommands on `app`.
  explicit PipelineCommands(CLI::App& app);
  ~PipelineCommands();
  // After parsing: runs the chosen subcommand and returns true, or returns false when none of
  // these was chosen. Throws reason::Error on failure.
  bool run();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace reason::cli
