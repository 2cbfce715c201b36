// C ABI: pipelines (sdk/rl/pipeline.h).
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "capi_internal.h"
#include "core/log.h"
#include "rl/pipeline.h"

using reason::capi::guard;

struct reason_tool_result {
  std::string text;
};

namespace {

reason::PipelineOptions pipeline_options(const reason_pipeline_options* o, const char* fn) {
  reason::PipelineOptions po;
  if (!o) return po;
  if (o->struct_size < sizeof(uint32_t) + sizeof(int))
    reason::fail(reason::ErrorCode::InvalidArgument, "opts->struct_size is not set");
  po.progress = o->progress != 0;
  const bool has_strides = o->struct_size >= offsetof(reason_pipeline_options, tool_stride) + sizeof(size_t);
  const size_t reward_stride = has_strides ? o->reward_stride : 0, tool_stride = has_strides ? o->tool_stride : 0;
  const bool has_rewards = o->struct_size >= offsetof(reason_pipeline_options, n_rewards) + sizeof(size_t);
  if (has_rewards && o->n_rewards > 0) {
    if (!o->rewards) reason::fail(reason::ErrorCode::InvalidArgument, "opts->rewards is NULL");
    for (size_t i = 0; i < o->n_rewards; ++i) {
      const reason_pipeline_reward r =
          reason::capi::array_element(o->rewards, reward_stride, i, sizeof(reason_pipeline_reward), "opts->rewards");
      if (!r.name || !*r.name) reason::fail(reason::ErrorCode::InvalidArgument, "opts->rewards[{}].name is empty", i);
      if (!r.fn) reason::fail(reason::ErrorCode::InvalidArgument, "opts->rewards[{}].fn is NULL", i);
      po.rewards[r.name] = [r](const reason::RewardInput& in) {
        return r.fn(r.user_data, in.prompt.c_str(), in.completion.c_str(), in.answer.c_str(),
                    in.extra_json.empty() ? "{}" : in.extra_json.c_str());
      };
    }
  }
  const bool has_tools = o->struct_size >= offsetof(reason_pipeline_options, n_tools) + sizeof(size_t);
  if (has_tools && o->n_tools > 0) {
    if (!o->tools) reason::fail(reason::ErrorCode::InvalidArgument, "opts->tools is NULL");
    for (size_t i = 0; i < o->n_tools; ++i) {
      const reason_pipeline_tool t =
          reason::capi::array_element(o->tools, tool_stride, i, sizeof(reason_pipeline_tool), "opts->tools");
      if (!t.name || !*t.name) reason::fail(reason::ErrorCode::InvalidArgument, "opts->tools[{}].name is empty", i);
      if (!t.fn) reason::fail(reason::ErrorCode::InvalidArgument, "opts->tools[{}].fn is NULL", i);
      po.tools[t.name] = [t](const std::string& args) {
        reason_tool_result r;
        const int rc = t.fn(t.user_data, args.c_str(), &r);
        if (rc != 0) throw std::runtime_error(r.text.empty() ? "returned " + std::to_string(rc) : r.text);
        return r.text;
      };
    }
  }
  const bool has_comm = o->struct_size >= offsetof(reason_pipeline_options, mpi_comm) + sizeof(const void*);
  if (has_comm && o->mpi_comm) po.comm = reason::mpi_communicator(o->mpi_comm);
  (void)fn;
  return po;
}

}  // namespace

extern "C" {

REASON_API void reason_tool_result_set(reason_tool_result* result, const char* text, size_t len) {
  if (!result) return;
  try {  // nothing may throw through the caller's C frames
    result->text.assign(text ? text : "", text ? len : 0);
  } catch (...) {
    result->text.clear();
  }
}

REASON_API reason_status reason_pipeline_run(const char* config_path, const char* out_dir,
                                             const reason_pipeline_options* opts, char** summary_json) {
  REASON_CHECK_ARG(config_path, "reason_pipeline_run", "config_path is NULL");
  REASON_CHECK_ARG(out_dir && *out_dir, "reason_pipeline_run", "out_dir is NULL or empty");
  if (summary_json) *summary_json = nullptr;
  return guard("reason_pipeline_run", [&] {
    reason::PipelineOptions po = pipeline_options(opts, "reason_pipeline_run");
    po.out_dir = out_dir;
    // With a log callback the reports go to it, line by line, instead of stderr.
    std::unique_ptr<FILE, int (*)(FILE*)> log(reason::has_log_sink() ? reason::open_log_stream(reason::LogLevel::Info) : nullptr,
                                              [](FILE* f) { return f ? std::fclose(f) : 0; });
    if (log) po.log = log.get();
    auto summary = reason::run_pipeline(config_path, po);
    if (summary_json) *summary_json = reason::capi::dup_string(summary.dump(2));
  });
}

REASON_API reason_status reason_pipeline_check(const char* config_path, const reason_pipeline_options* opts) {
  REASON_CHECK_ARG(config_path, "reason_pipeline_check", "config_path is NULL");
  return guard("reason_pipeline_check", [&] { reason::check_pipeline(config_path, pipeline_options(opts, "")); });
}

REASON_API reason_status reason_mpi_finalize(void) {
  return guard("reason_mpi_finalize", [] { reason::finalize_mpi_world(); });
}

}  // extern "C"
