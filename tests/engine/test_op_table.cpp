// The generic derivative checks over every op in the table, in f64:
// VJP (inner-product identity and central differences), JVP (central
// differences), HVP (symmetry, central differences of gradients, and
// forward-over-reverse = reverse-over-reverse). Relative error bound:
// check::kGradTol = 1e-6, with errors divided by max(|a|, |b|, 1e-3).
#include <doctest/doctest.h>

#include <set>

#include "engine/check/gradcheck.h"
#include "engine/check/op_table.h"
#include "engine/op_registry.h"

using namespace bissl;

TEST_SUITE("op_table") {
  TEST_CASE("every registered op is in the table or exempt with a reason") {
    std::set<std::string> covered;
    for (auto& e : check::op_table()) covered.insert(e.op);
    for (auto& e : check::op_table_exempt()) covered.insert(e.first);
    for (auto& name : OpRegistry::get().names()) {
      INFO("op ", name);
      CHECK(covered.count(name) == 1);
    }
  }

  TEST_CASE("f64 derivative checks for every op") {
    uint64_t seed = 1;
    for (auto& entry : check::op_table()) {
      Generator g(0xB155L + seed);
      auto cases = entry.cases(g, DType::F64, 1);
      REQUIRE(!cases.empty());
      for (auto& c : cases) {
        // Fresh random inputs, never all zeros.
        for (size_t i = 0; i < c.inputs.size(); ++i) {
          if (!c.inputs[i].defined() || !c.diff[i]) continue;
          double m = 0;
          for (double v : c.inputs[i].to_vector()) m = std::max(m, std::abs(v));
          CHECK(m > 0);
        }
        for (auto& r : check::check_case(c, seed++)) {
          INFO(entry.op, " / ", c.label, " / ", r.check, ": relative error ", r.error, " (bound ", r.bound, ")");
          CHECK(r.passed());
        }
      }
    }
  }
}
