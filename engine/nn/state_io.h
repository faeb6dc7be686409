#pragma once
// Modules' state as safetensors: one module per file (parameters and
// persistent buffers under the module's own names, copied to the CPU), and
// checkpoints that hold several state dicts in one file under name prefixes
// ("backbone.", "optim.", ...). Errors name the file and what it was for.
#include <map>
#include <string>

#include "engine/io/safetensors.h"
#include "engine/nn/module.h"

namespace bissl::nn {

void save_module(const Module& m, const std::string& path, const std::map<std::string, std::string>& meta = {});
void load_module(Module& m, const std::string& path, const std::string& what);
void load_module(Module& m, const io::SafetensorsFile& f, const std::string& what);

// `prefixed` makes a checkpoint's entries for one part (copied to the CPU);
// `with_prefix` takes that part back out of a loaded file, the prefix removed.
io::NamedTensors prefixed(const std::string& prefix, const StateDict& sd);
StateDict with_prefix(const io::SafetensorsFile& f, const std::string& prefix);

}  // namespace bissl::nn
