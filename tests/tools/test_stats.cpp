// tools/stats statistics against hand-worked examples, t-SNE on separated
// clusters, and the SVG writers' output and failure modes.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <unistd.h>

#include "engine/error.h"
#include "tools/stats/stats.h"
#include "tools/stats/svg.h"
#include "tools/stats/tsne.h"

using namespace bissl;
using namespace bissl::evalstats;
namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

fs::path scratch_dir() {
  const fs::path d = fs::temp_directory_path() / ("bissl_test_stats_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("mean_std: sample standard deviation") {
  // mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; sample variance 32/7.
  const MeanStd m = mean_std({2, 4, 4, 4, 5, 5, 7, 9});
  CHECK(m.n == 8);
  CHECK(m.mean == doctest::Approx(5.0));
  CHECK(m.std == doctest::Approx(std::sqrt(32.0 / 7.0)));
  const MeanStd one = mean_std({3.5});
  CHECK(one.mean == 3.5);
  CHECK(one.std == 0.0);
  CHECK_THROWS_AS(mean_std({}), Error);
}

TEST_CASE("binomial") {
  CHECK(binomial(0, 0) == 1);
  CHECK(binomial(5, 2) == 10);
  CHECK(binomial(5, 5) == 1);
  CHECK(binomial(5, 6) == 0);
  CHECK(binomial(5, -1) == 0);
  CHECK(binomial(20, 10) == 184756);
  CHECK(binomial(40, 20) == 137846528820LL);
  CHECK(binomial(66, 33) == 7219428434016265740LL);  // the largest central one in int64
  CHECK_THROWS_AS(binomial(67, 33), Error);
  CHECK_THROWS_AS(binomial(-1, 0), Error);
}

TEST_CASE("stage seeds: group summary, the group permutation test, the two-level bootstrap, by hand") {
  SUBCASE("group_summary: means, their spread, the variance components") {
    // Groups {1,3}, {5,7}: means 2, 6 (std √2 each); the means' std √8;
    // within² = 2; between² = 8 − 2/2 = 7.
    const GroupSummary g = group_summary({{1, 3}, {5, 7}});
    REQUIRE(g.groups.size() == 2);
    CHECK(g.groups[0].mean == 2.0);
    CHECK(g.groups[1].std == doctest::Approx(std::sqrt(2.0)));
    CHECK(g.of_means.mean == 4.0);
    CHECK(g.of_means.std == doctest::Approx(std::sqrt(8.0)));
    CHECK(g.within_std == doctest::Approx(std::sqrt(2.0)));
    CHECK(g.between_std == doctest::Approx(std::sqrt(7.0)));
    // Means 1, 1: the between estimate 0 − 1/2 is clamped to 0.
    const GroupSummary h = group_summary({{0, 2}, {1, 1}});
    CHECK(h.of_means.std == 0.0);
    CHECK(h.within_std == doctest::Approx(1.0));
    CHECK(h.between_std == 0.0);
    CHECK(group_summary({{3, 5}}).between_std == 0.0);  // one group: no between estimate
    CHECK_THROWS_WITH_AS(group_summary({{1, 2}, {3}}), doctest::Contains("same size, found 2 and 1"), Error);
    CHECK_THROWS_AS(group_summary({}), Error);
    CHECK_THROWS_AS(group_summary({{}}), Error);
  }
  SUBCASE("group_permutation_test: the stage-seed means are the unit") {
    // Means {1, 2} against {3, 4} whatever the spread inside: the 6 splits of
    // permutation_test({1,2}, {3,4}) above.
    for (auto ab : {std::make_pair(Groups{{1, 1}, {2, 2}}, Groups{{3, 3}, {4, 4}}),
                    std::make_pair(Groups{{0, 2}, {1, 3}}, Groups{{2, 4}, {3, 5}})}) {
      const PermutationResult r = group_permutation_test(ab.first, ab.second);
      CHECK(r.observed == 2.0);
      CHECK(r.assignments == 6);
      CHECK(r.p_greater == doctest::Approx(1.0 / 6));
      CHECK(r.p_two_sided == doctest::Approx(2.0 / 6));
    }
    CHECK_THROWS_WITH_AS(group_permutation_test({{1, 2}}, {{3}}), doctest::Contains("found 2 and 1"), Error);
  }
  SUBCASE("two_level_bootstrap: the top level alone") {
    // a = {{0}} always resamples to 0; b = {{0}, {1}}: group sequences
    // (0,0) (0,1) (1,0) (1,1) → means 0, .5, .5, 1.
    const BootstrapResult r = two_level_bootstrap({{0}}, {{0}, {1}});
    CHECK(r.exact);
    CHECK(r.resamples == 4);
    CHECK(r.observed == 0.5);
    CHECK(r.p_not_greater == doctest::Approx(0.25));
    CHECK(r.p_not_less == doctest::Approx(1.0));
    CHECK(r.lo == 0.0);  // sorted {0, .5, .5, 1}: index ⌊0.025·3⌋ = 0
    CHECK(r.hi == 0.5);  // index ⌊0.975·3⌋ = 2
  }
  SUBCASE("two_level_bootstrap: the bottom level alone") {
    // b = {{0, 2}}: member sequences (0,0) (0,2) (2,0) (2,2) → means 0, 1, 1, 2;
    // against a = {{1}}: differences −1, 0, 0, 1.
    const BootstrapResult r = two_level_bootstrap({{1}}, {{0, 2}});
    CHECK(r.resamples == 4);
    CHECK(r.observed == 0.0);
    CHECK(r.p_not_greater == doctest::Approx(0.75));
    CHECK(r.p_not_less == doctest::Approx(0.75));
    CHECK(r.lo == -1.0);
    CHECK(r.hi == 0.0);
  }
  SUBCASE("two_level_bootstrap: both levels, exact and by fixed-seed draws") {
    // b = {{0, 2}, {4, 4}}: each of the 2 positions draws a group (1/2) and
    // then 2 members; the mean is 0 only when both draw group 0 and then
    // member 0 twice: (1/2 · 1/4)² = 1/64 of the 2²·(2²)² = 64 resamples.
    const Groups a{{0, 0}}, b{{0, 2}, {4, 4}};
    const BootstrapResult r = two_level_bootstrap(a, b);
    CHECK(r.exact);
    CHECK(r.resamples == 4 * 64);  // a: 1 group sequence × 2² member sequences (all 0), paired with b's 64
    CHECK(r.observed == 2.5);
    CHECK(r.p_not_greater == doctest::Approx(1.0 / 64));
    CHECK(r.p_not_less == doctest::Approx(1.0));
    // The same by draws (exact_limit 0): within sampling error, the same
    // numbers for the same seed, others for another.
    const BootstrapResult m = two_level_bootstrap(a, b, 200000, 7, 0);
    CHECK_FALSE(m.exact);
    CHECK(m.resamples == 200000);
    CHECK(m.p_not_greater == doctest::Approx(1.0 / 64).epsilon(0.1));
    const BootstrapResult m2 = two_level_bootstrap(a, b, 200000, 7, 0), m3 = two_level_bootstrap(a, b, 200000, 8, 0);
    CHECK(m2.p_not_greater == m.p_not_greater);
    CHECK(m3.p_not_greater != m.p_not_greater);
    CHECK_THROWS_AS(two_level_bootstrap({{1, 2}}, {{1}, {2, 3}}), Error);
    CHECK_THROWS_AS(two_level_bootstrap({{1}}, {{2}}, 0), Error);
  }
}

TEST_CASE("permutation_test: hand-enumerated p-values") {
  SUBCASE("a={1,2}, b={3,4}") {
    // Group a over the pooled {1,2,3,4} → mean(b') − mean(a'):
    //   {1,2}: +2  {1,3}: +1  {1,4}: 0  {2,3}: 0  {2,4}: −1  {3,4}: −2
    const PermutationResult r = permutation_test({1, 2}, {3, 4});
    CHECK(r.observed == 2.0);
    CHECK(r.assignments == 6);
    CHECK(r.p_greater == doctest::Approx(1.0 / 6));
    CHECK(r.p_two_sided == doctest::Approx(2.0 / 6));
    CHECK(r.p_less == doctest::Approx(1.0));
  }
  SUBCASE("decimal values: ±0.2 must tie with the observed 0.2 despite rounding") {
    // Same pattern as above scaled by 0.1: {+.2, +.1, 0, 0, −.1, −.2}.
    const PermutationResult r = permutation_test({0.1, 0.2}, {0.3, 0.4});
    CHECK(r.p_greater == doctest::Approx(1.0 / 6));
    CHECK(r.p_two_sided == doctest::Approx(2.0 / 6));
  }
  SUBCASE("ties: a={1,1}, b={1,2}") {
    // Pooled {1,1,1,2}. The 3 assignments putting 2 in a give 1 − 1.5 = −0.5;
    // the 3 putting two 1s in a give 1.5 − 1 = +0.5 (the observed value).
    const PermutationResult r = permutation_test({1, 1}, {1, 2});
    CHECK(r.observed == 0.5);
    CHECK(r.p_greater == doctest::Approx(0.5));
    CHECK(r.p_two_sided == doctest::Approx(1.0));
    CHECK(r.p_less == doctest::Approx(1.0));
  }
  SUBCASE("unequal sizes, both orders") {
    // a over pooled {1,2,3}: {1}: 2.5 − 1 = +1.5  {2}: 2 − 2 = 0  {3}: 1.5 − 3 = −1.5
    const PermutationResult r = permutation_test({1}, {2, 3});
    CHECK(r.observed == 1.5);
    CHECK(r.assignments == 3);
    CHECK(r.p_greater == doctest::Approx(1.0 / 3));
    CHECK(r.p_two_sided == doctest::Approx(2.0 / 3));
    CHECK(r.p_less == doctest::Approx(1.0));
    const PermutationResult s = permutation_test({2, 3}, {1});
    CHECK(s.observed == -1.5);
    CHECK(s.assignments == 3);
    CHECK(s.p_less == doctest::Approx(1.0 / 3));
    CHECK(s.p_two_sided == doctest::Approx(2.0 / 3));
    CHECK(s.p_greater == doctest::Approx(1.0));
  }
  SUBCASE("identical groups") {
    const PermutationResult r = permutation_test({0.91, 0.92, 0.93}, {0.91, 0.92, 0.93});
    CHECK(r.observed == 0.0);
    CHECK(r.assignments == 20);
    CHECK(r.p_two_sided == 1.0);
  }
}

TEST_CASE("permutation_test: the spec's 10 + 10 seeds enumerate all C(20,10)") {
  std::vector<double> a, b;
  for (int i = 0; i < 10; ++i) a.push_back(0.80 + 0.003 * i), b.push_back(0.81 + 0.0025 * i);
  const PermutationResult r = permutation_test(a, b);
  CHECK(r.assignments == 184756);
  CHECK(r.p_two_sided > 0.0);
  CHECK(r.p_two_sided <= 1.0);
  // Fully separated groups: only the observed split (and its mirror) is as extreme.
  std::vector<double> lo, hi;
  for (int i = 0; i < 10; ++i) lo.push_back(i), hi.push_back(10 + i);
  const PermutationResult s = permutation_test(lo, hi);
  CHECK(s.p_greater == doctest::Approx(1.0 / 184756));
  CHECK(s.p_two_sided == doctest::Approx(2.0 / 184756));
}

TEST_CASE("permutation_test: errors") {
  CHECK_THROWS_AS(permutation_test({}, {1.0}), Error);
  CHECK_THROWS_AS(permutation_test({1.0}, {}), Error);
  const std::vector<double> twenty(20, 1.0);
  const std::string msg = error_of([&] { permutation_test(twenty, twenty); });
  CHECK(msg.find("20 and 20") != std::string::npos);
}

TEST_CASE("voc07_ap: 11-point interpolation by hand") {
  // Ranked by score: + − + − +  (3 positives)
  //   rank 1: recall 1/3 precision 1;   rank 2: 1/3, 1/2;  rank 3: 2/3, 2/3
  //   rank 4: 2/3, 1/2;                 rank 5: 1, 3/5
  // t = 0, .1, .2, .3 → 1;  t = .4, .5, .6 → max(2/3, 1/2, 3/5) = 2/3;
  // t = .7, .8, .9, 1 → 3/5.  AP = (4·1 + 3·2/3 + 4·3/5) / 11 = 8.4 / 11.
  // (Input order is shuffled to exercise the sort.)
  const std::vector<double> scores = {0.6, 0.9, 0.5, 0.8, 0.7};
  const std::vector<int> pos = {0, 1, 1, 0, 1};
  CHECK(voc07_ap(scores, pos) == doctest::Approx(8.4 / 11));
  CHECK(voc07_ap({0.9, 0.1, 0.5}, {1, 0, 1}) == doctest::Approx(1.0));
  CHECK(voc07_ap({0.9, 0.1}, {0, 0}) == 0.0);
  CHECK(voc07_map({scores, {0.9, 0.1, 0.5}}, {pos, {1, 0, 1}}) == doctest::Approx((8.4 / 11 + 1) / 2));
  // -1 leaves a sample out of the ranking (VOC's difficult rule): dropping
  // the negative at rank 2 gives + + − +: recall 1/3, 2/3, 2/3, 1 at
  // precision 1, 1, 2/3, 3/4 → AP = (7·1 + 4·3/4) / 11 = 10 / 11.
  CHECK(voc07_ap(scores, {0, 1, 1, -1, 1}) == doctest::Approx(10.0 / 11));
  // An ignored sample's score may be anything, NaN included.
  CHECK(voc07_ap({0.9, std::nan(""), 0.5}, {1, -1, 0}) == doctest::Approx(1.0));
  // A class without positives is skipped, as the reference does, and counted.
  int64_t scored = 0;
  CHECK(voc07_map({scores, {0.9, 0.1}, {0.9, 0.1, 0.5}}, {pos, {0, -1}, {1, 0, 1}}, &scored) ==
        doctest::Approx((8.4 / 11 + 1) / 2));
  CHECK(scored == 2);
  CHECK_THROWS_AS(voc07_map({{0.9, 0.1}}, {{0, 0}}), Error);
  CHECK_THROWS_AS(voc07_ap({0.9, 0.1}, {1}), Error);
  CHECK_THROWS_AS(voc07_ap({0.9}, {2}), Error);
}

TEST_CASE("topk_accuracy") {
  const std::vector<double> logits = {
      0.1, 0.5, 0.3, 0.2,  // label 1: the maximum             → top-1
      0.9, 0.1, 0.8, 0.0,  // label 2: second                  → top-2
      0.2, 0.2, 0.1, 0.7,  // label 0: tied second with class 1 → top-2
      0.4, 0.3, 0.2, 0.1,  // label 3: last                    → top-4
  };
  const std::vector<int64_t> labels = {1, 2, 0, 3};
  CHECK(topk_accuracy(logits, 4, 4, labels, 1) == doctest::Approx(0.25));
  CHECK(topk_accuracy(logits, 4, 4, labels, 2) == doctest::Approx(0.75));
  CHECK(topk_accuracy(logits, 4, 4, labels, 3) == doctest::Approx(0.75));
  CHECK(topk_accuracy(logits, 4, 4, labels, 4) == doctest::Approx(1.0));
  CHECK(topk_accuracy({0.5, 0.5, 0.0}, 1, 3, {1}, 1) == 1.0);  // tied maximum counts
  CHECK_THROWS_AS(topk_accuracy(logits, 4, 4, {1, 2, 0, 4}, 1), Error);
  CHECK_THROWS_AS(topk_accuracy(logits, 4, 3, labels, 1), Error);
  CHECK_THROWS_AS(topk_accuracy(logits, 4, 4, labels, 0), Error);
}

TEST_CASE("tsne: separated clusters stay separated, and a seed fixes the output") {
  constexpr int64_t kPerCluster = 20, kClusters = 3, kDim = 10, kN = kPerCluster * kClusters;
  std::mt19937 rng(7);
  std::vector<float> x(kN * kDim);
  std::vector<int64_t> label(kN);
  for (int64_t i = 0; i < kN; ++i) {
    label[i] = i % kClusters;  // interleaved, so index order says nothing about clusters
    for (int64_t k = 0; k < kDim; ++k) {
      const double noise = static_cast<double>(rng()) / 4294967296.0 - 0.5;
      x[i * kDim + k] = static_cast<float>((k == label[i] ? 10.0 : 0.0) + noise);
    }
  }
  TsneOptions o;  // default perplexity 30: separation held for seeds 0–9 (10 fails some)
  o.seed = 3;
  const auto y = tsne(x, kN, kDim, o);
  REQUIRE(y.size() == static_cast<size_t>(kN));
  for (int64_t i = 0; i < kN; ++i) {
    int64_t best = -1;
    double best_d = 1e300;
    for (int64_t j = 0; j < kN; ++j) {
      if (j == i) continue;
      const double d = std::hypot(y[i][0] - y[j][0], y[i][1] - y[j][1]);
      if (d < best_d) best_d = d, best = j;
    }
    CHECK(label[best] == label[i]);
  }
  CHECK(tsne(x, kN, kDim, o) == y);
  o.seed = 4;
  CHECK(tsne(x, kN, kDim, o) != y);

  TsneOptions bad;
  CHECK_THROWS_AS(tsne({0, 1}, 2, 1, bad), Error);
  bad.perplexity = 60;
  CHECK_THROWS_AS(tsne(x, kN, kDim, bad), Error);
  CHECK_THROWS_AS(tsne(x, kN, kDim + 1), Error);
}

TEST_CASE("svg writers") {
  const fs::path dir = scratch_dir();
  SUBCASE("scatter") {
    const fs::path p = dir / "scatter.svg";
    write_scatter_svg(p.string(), {{0, 0}, {1, 2}, {3, -1}, {2, 2}}, {0, 1, 2, 1},
                      {"T-shirt", "Trouser", "Pullover"}, "t-SNE <BiSSL> & FT");
    const std::string s = read_all(p);
    CHECK(s.rfind("<svg", 0) == 0);
    CHECK(s.find("t-SNE &lt;BiSSL&gt; &amp; FT") != std::string::npos);
    for (const char* name : {"T-shirt", "Trouser", "Pullover"}) CHECK(s.find(name) != std::string::npos);
    CHECK(s.find("</svg>") != std::string::npos);
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    CHECK_THROWS_AS(write_scatter_svg(p.string(), {{0, 0}}, {0, 1}, {}, "x"), Error);
  }
  SUBCASE("lines") {
    const fs::path p = dir / "lines.svg";
    Series a{"FT", {0, 1, 2, 3}, {2.3, 1.1, 0.7, 0.5}};
    Series b{"BiSSL+FT", {0, 1, 2, 3}, {2.3, 0.9, NAN, 0.4}};
    Series c{"single", {1.5}, {1.0}};
    write_lines_svg(p.string(), {a, b, c}, "validation loss", "epoch", "loss");
    const std::string s = read_all(p);
    CHECK(s.rfind("<svg", 0) == 0);
    for (const char* text : {"validation loss", "epoch", "loss", "FT", "BiSSL+FT", "single", "polyline"})
      CHECK(s.find(text) != std::string::npos);
    CHECK(s.find("nan") == std::string::npos);
    CHECK_THROWS_AS(write_lines_svg(p.string(), {Series{"bad", {0, 1}, {0}}}, "t", "x", "y"), Error);
  }
  SUBCASE("unwritable path") {
    const std::string msg = error_of([] { write_scatter_svg("/nonexistent-dir/x.svg", {}, {}, {}, "t"); });
    CHECK(msg.find("/nonexistent-dir/x.svg") != std::string::npos);
    const std::string msg2 = error_of([] { write_lines_svg("/nonexistent-dir/y.svg", {}, "t", "x", "y"); });
    CHECK(msg2.find("/nonexistent-dir/y.svg") != std::string::npos);
  }
  fs::remove_all(dir);
}
