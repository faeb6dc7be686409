// The doctest main of the multi-rank tests: run directly (one rank) or as
// `mpirun -np N test_dist`. Rank 0 reports; the other ranks print only
// failures, each line's test case named by doctest, the rank by the prefix
// of abort messages. A failure on any rank fails the job (dist::Session).
//
// BISSL_TEST_THROW_ON_RANK=r: rank r throws at once while the others wait in
// a barrier: the job must end with an error naming rank r, promptly
// (tests/dist/expect_abort.sh).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "engine/dist/comm.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  bissl::dist::Session session(argc, argv);
  return session.run([&] {
    if (const char* r = std::getenv("BISSL_TEST_THROW_ON_RANK")) {
      if (bissl::dist::rank() == std::atoi(r)) throw bissl::Error("injected failure (BISSL_TEST_THROW_ON_RANK)");
      bissl::dist::world().barrier();  // never returns: the failing rank ends the job
      return 0;
    }
    doctest::Context ctx(argc, argv);
    if (bissl::dist::rank() > 0) ctx.setOption("minimal", true);
    // doctest catches an exception in a test case and goes on to the next,
    // where this rank would wait in collectives the others have passed: with
    // several ranks the first failure ends this rank's run, and so the job.
    if (bissl::dist::size() > 1) ctx.setOption("abort-after", 1);
    return ctx.run();
  });
}
