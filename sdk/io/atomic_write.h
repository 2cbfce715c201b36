// Crash-safe file replacement: write a temporary file next to the target, fsync it, rename it
// over the target, fsync the directory. A reader (or a crash at any point) sees either the old
// file or the complete new one, never a torn mix.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace reason {

// Receives consecutive chunks of the file's content; throws reason::Error(Io) if a write fails.
using ByteSink = std::function<void(const void* data, size_t size)>;

// Writes the content that `produce` streams into its sink to `path` atomically: to
// `path + ".tmp.<pid>"` (created exclusively, mode 0644 less umask), fsync, rename over `path`,
// fsync the directory. If anything throws (an I/O error, or an exception from `produce`) the
// temporary file is removed and an existing file at `path` is left untouched; the exception
// propagates (I/O failures as reason::Error(Io) naming the path and the errno text).
// Thread rules: concurrent calls for different paths are safe; for the same path from one
// process they race on the temporary name and must be serialised by the caller.
void atomic_write(const std::string& path, const std::function<void(const ByteSink& sink)>& produce);

// atomic_write for a small in-memory file (config.json, generation_config.json, an index).
void atomic_write_file(const std::string& path, std::string_view bytes);

}  // namespace reason
