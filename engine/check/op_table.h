#pragma once
// The op table: every op with sample inputs, driving the generic derivative
// checks (tests/engine/test_op_table.cpp and `bissl-ops grad`) and the CPU
// timings (`bissl-ops perf`). Adding an op = one registration + one entry here.
#include <functional>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"

namespace bissl::check {

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct OpCase {
  std::string label;           // e.g. "stride2_pad1_groups2"
  std::vector<Tensor> inputs;  // fresh random values; i64 for indices
  std::vector<bool> diff;      // which inputs are differentiated
  Fn fn;                       // computes the outputs
};

struct OpEntry {
  std::string op;  // registry name, or a composite's name (marked composite)
  bool composite = false;
  // Builds the cases in the given float dtype (f64 for checks, f32 for perf);
  // `scale` > 1 asks for larger shapes (perf).
  std::function<std::vector<OpCase>(Generator&, DType dt, int scale)> cases;
};

const std::vector<OpEntry>& op_table();
// Registry ops with no derivative to check, and why.
const std::vector<std::pair<std::string, std::string>>& op_table_exempt();

}  // namespace bissl::check
