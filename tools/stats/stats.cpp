#include "tools/stats/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/error.h"

namespace bissl::evalstats {

MeanStd mean_std(const std::vector<double>& x) {
  BISSL_CHECK(!x.empty(), "mean_std: expected at least one value, found none");
  MeanStd r;
  r.n = static_cast<int64_t>(x.size());
  for (double v : x) r.mean += v;
  r.mean /= static_cast<double>(r.n);
  if (r.n > 1) {
    // Two passes: summing squared deviations avoids the cancellation of E[x²] − E[x]².
    double ss = 0;
    for (double v : x) ss += (v - r.mean) * (v - r.mean);
    r.std = std::sqrt(ss / static_cast<double>(r.n - 1));
  }
  return r;
}

int64_t binomial(int64_t n, int64_t k) {
  BISSL_CHECK(n >= 0, "binomial: expected n >= 0, found n = ", n);
  if (k < 0 || k > n) return 0;
  k = std::min(k, n - k);
  int64_t r = 1;
  for (int64_t i = 1; i <= k; ++i) {
    // r·(n−k+i)/i is exact (it is C(n−k+i, i)); dividing out gcds first keeps
    // the product from overflowing before the division.
    const int64_t g = std::gcd(r, i);
    const int64_t rr = r / g, t = (n - k + i) / (i / g);
    BISSL_CHECK(rr <= std::numeric_limits<int64_t>::max() / t, "binomial: C(", n, ", ", k,
                ") does not fit in int64");
    r = rr * t;
  }
  return r;
}

namespace {
constexpr int64_t kMaxAssignments = 200000000;
}  // namespace

bool permutation_test_fits(int64_t na, int64_t nb) {
  const int64_t n = na + nb, m = std::min(na, nb);
  // Stop at the cap before binomial could overflow: C(n, i) grows with i up to m.
  int64_t count = 1;
  for (int64_t i = 1; i <= m && count <= kMaxAssignments; ++i) count = binomial(n, i);
  return count <= kMaxAssignments;
}

PermutationResult permutation_test(const std::vector<double>& a, const std::vector<double>& b) {
  const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
  BISSL_CHECK(na > 0 && nb > 0, "permutation_test: expected two non-empty groups, found sizes ", na,
              " and ", nb);
  const int64_t n = na + nb, m = std::min(na, nb);
  BISSL_CHECK(permutation_test_fits(na, nb), "permutation_test: groups of ", na, " and ", nb,
              " give more than ", kMaxAssignments, " assignments (C(", n, ", ", m,
              ") is too many to enumerate exactly)");
  const int64_t count = binomial(n, m);

  std::vector<double> pooled(a);
  pooled.insert(pooled.end(), b.begin(), b.end());
  for (double v : pooled)
    BISSL_CHECK(std::isfinite(v), "permutation_test: expected finite values, found ", v);
  // The statistic is shift-invariant; centring keeps running sums small so
  // rounding stays far below the tie tolerance.
  double centre = 0;
  for (double v : pooled) centre += v;
  centre /= static_cast<double>(n);
  double scale = 1;
  for (double& v : pooled) v -= centre, scale = std::max(scale, std::fabs(v));

  PermutationResult r;
  r.observed = mean_std(b).mean - mean_std(a).mean;
  r.assignments = count;
  const double tol = 1e-12 * std::max(scale, std::fabs(r.observed));
  const double obs = r.observed, abs_obs = std::fabs(obs);

  // Enumerate subsets of size m (the smaller group; complements cover the
  // rest) in lexicographic order, keeping prefix sums so each step only
  // re-adds the positions that changed.
  const bool chose_a = (m == na);
  double total = 0;
  for (double v : pooled) total += v;
  std::vector<int64_t> c(m);
  std::vector<double> ps(m + 1, 0.0);
  for (int64_t j = 0; j < m; ++j) c[j] = j, ps[j + 1] = ps[j] + pooled[j];
  int64_t two = 0, greater = 0, less = 0;
  const double inv_a = 1.0 / static_cast<double>(na), inv_b = 1.0 / static_cast<double>(nb);
  while (true) {
    const double s = ps[m];
    const double sa = chose_a ? s : total - s, sb = chose_a ? total - s : s;
    const double stat = sb * inv_b - sa * inv_a;
    two += std::fabs(stat) >= abs_obs - tol;
    greater += stat >= obs - tol;
    less += stat <= obs + tol;
    int64_t i = m - 1;
    while (i >= 0 && c[i] == n - m + i) --i;
    if (i < 0) break;
    ++c[i];
    ps[i + 1] = ps[i] + pooled[c[i]];
    for (int64_t j = i + 1; j < m; ++j) c[j] = c[j - 1] + 1, ps[j + 1] = ps[j] + pooled[c[j]];
  }
  const double total_count = static_cast<double>(count);
  r.p_two_sided = static_cast<double>(two) / total_count;
  r.p_greater = static_cast<double>(greater) / total_count;
  r.p_less = static_cast<double>(less) / total_count;
  return r;
}

namespace {

void check_groups(const Groups& g, const char* who, const char* arm) {
  BISSL_CHECK(!g.empty(), who, ": expected at least one group in arm ", arm, ", found none");
  const size_t n = g[0].size();
  BISSL_CHECK(n > 0, who, ": expected non-empty groups, found an empty one in arm ", arm);
  for (size_t i = 0; i < g.size(); ++i) {
    BISSL_CHECK(g[i].size() == n, who, ": expected every group of the same size, found ", n, " and ", g[i].size(),
                " (group ", i, " of arm ", arm, ")");
    for (double v : g[i]) BISSL_CHECK(std::isfinite(v), who, ": expected finite values, found ", v);
  }
}

double grand_mean(const Groups& g) {
  double s = 0;
  size_t n = 0;
  for (auto& x : g)
    for (double v : x) s += v, ++n;
  return s / static_cast<double>(n);
}

// Every equally likely two-level resample's mean for one arm: the groups'
// sequences with replacement, then each drawn group's members' sequences.
// Returns an empty vector when there would be more than `limit`.
std::vector<double> exact_resample_means(const Groups& g, int64_t limit) {
  const int64_t k = static_cast<int64_t>(g.size()), n = static_cast<int64_t>(g[0].size());
  // Within one group: the n^n member sequences' sums.
  auto pow_capped = [&](int64_t b, int64_t e) {
    int64_t r = 1;
    for (int64_t i = 0; i < e; ++i) {
      if (r > limit / b) return limit + 1;
      r *= b;
    }
    return r;
  };
  const int64_t per_group = pow_capped(n, n);
  if (per_group > limit) return {};
  int64_t count = pow_capped(k, k);
  for (int64_t j = 0; j < k && count <= limit; ++j) count = count > limit / per_group ? limit + 1 : count * per_group;
  if (count > limit) return {};
  std::vector<std::vector<double>> sums(static_cast<size_t>(k));
  for (int64_t gi = 0; gi < k; ++gi) {
    std::vector<int64_t> idx(static_cast<size_t>(n), 0);
    for (int64_t c = 0; c < per_group; ++c) {
      double s = 0;
      for (int64_t v : idx) s += g[size_t(gi)][size_t(v)];
      sums[size_t(gi)].push_back(s);
      for (int64_t d = n - 1; d >= 0 && ++idx[size_t(d)] == n; --d) idx[size_t(d)] = 0;
    }
  }
  std::vector<double> out;
  out.reserve(static_cast<size_t>(count));
  const double inv = 1.0 / static_cast<double>(k * n);
  // Positions j = 0..k−1 each pick a group t_j and one of its per_group sums.
  std::vector<int64_t> t(static_cast<size_t>(k), 0), s(static_cast<size_t>(k), 0);
  while (true) {
    double total = 0;
    for (int64_t j = 0; j < k; ++j) total += sums[size_t(t[size_t(j)])][size_t(s[size_t(j)])];
    out.push_back(total * inv);
    int64_t d = k - 1;
    for (; d >= 0; --d) {  // odometer over (t_j, s_j) pairs, s fastest
      if (++s[size_t(d)] < per_group) break;
      s[size_t(d)] = 0;
      if (++t[size_t(d)] < k) break;
      t[size_t(d)] = 0;
    }
    if (d < 0) break;
  }
  return out;
}

// splitmix64: a fixed, fully specified generator (std::mt19937_64 would do
// too, but the standard's distributions differ between libraries).
struct SplitMix {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t m) {  // uniform in [0, m), by rejection
    const uint64_t um = static_cast<uint64_t>(m), lim = UINT64_MAX - UINT64_MAX % um;
    uint64_t r;
    do r = next();
    while (r >= lim);
    return static_cast<int64_t>(r % um);
  }
};

double drawn_mean(const Groups& g, SplitMix& rng) {
  const int64_t k = static_cast<int64_t>(g.size()), n = static_cast<int64_t>(g[0].size());
  double s = 0;
  for (int64_t j = 0; j < k; ++j) {
    const auto& grp = g[size_t(rng.below(k))];
    for (int64_t i = 0; i < n; ++i) s += grp[size_t(rng.below(n))];
  }
  return s / static_cast<double>(k * n);
}

}  // namespace

GroupSummary group_summary(const Groups& g) {
  check_groups(g, "group_summary", "");
  GroupSummary r;
  std::vector<double> means;
  double var_sum = 0;
  for (auto& x : g) {
    r.groups.push_back(mean_std(x));
    means.push_back(r.groups.back().mean);
    var_sum += r.groups.back().std * r.groups.back().std;
  }
  r.of_means = mean_std(means);
  const double within2 = var_sum / static_cast<double>(g.size());
  r.within_std = std::sqrt(within2);
  const double between2 = r.of_means.std * r.of_means.std - within2 / static_cast<double>(g[0].size());
  r.between_std = g.size() > 1 && between2 > 0 ? std::sqrt(between2) : 0.0;
  return r;
}

PermutationResult group_permutation_test(const Groups& a, const Groups& b) {
  check_groups(a, "group_permutation_test", "a");
  check_groups(b, "group_permutation_test", "b");
  BISSL_CHECK(a[0].size() == b[0].size(), "group_permutation_test: expected groups of one size in both arms, found ",
              a[0].size(), " and ", b[0].size());
  std::vector<double> ma, mb;
  for (auto& x : a) ma.push_back(mean_std(x).mean);
  for (auto& x : b) mb.push_back(mean_std(x).mean);
  return permutation_test(ma, mb);
}

BootstrapResult two_level_bootstrap(const Groups& a, const Groups& b, int64_t resamples, uint64_t seed,
                                    int64_t exact_limit) {
  check_groups(a, "two_level_bootstrap", "a");
  check_groups(b, "two_level_bootstrap", "b");
  BISSL_CHECK(resamples >= 1, "two_level_bootstrap: expected resamples >= 1, found ", resamples);
  BootstrapResult r;
  r.observed = grand_mean(b) - grand_mean(a);
  std::vector<double> d;
  std::vector<double> ea = exact_resample_means(a, exact_limit), eb;
  if (!ea.empty()) eb = exact_resample_means(b, exact_limit / static_cast<int64_t>(ea.size()));
  if (!ea.empty() && !eb.empty()) {
    r.exact = true;
    d.reserve(ea.size() * eb.size());
    for (double y : eb)
      for (double x : ea) d.push_back(y - x);
  } else {
    SplitMix rng{seed};
    d.reserve(static_cast<size_t>(resamples));
    for (int64_t i = 0; i < resamples; ++i) {
      const double x = drawn_mean(a, rng);
      d.push_back(drawn_mean(b, rng) - x);
    }
  }
  r.resamples = static_cast<int64_t>(d.size());
  std::sort(d.begin(), d.end());
  double scale = 1e-300;
  for (auto* g : {&a, &b})
    for (auto& x : *g)
      for (double v : x) scale = std::max(scale, std::fabs(v));
  const double tol = 1e-12 * scale;
  int64_t le = 0, ge = 0;
  for (double v : d) le += v <= tol, ge += v >= -tol;
  r.p_not_greater = static_cast<double>(le) / static_cast<double>(d.size());
  r.p_not_less = static_cast<double>(ge) / static_cast<double>(d.size());
  const double last = static_cast<double>(d.size() - 1);
  r.lo = d[static_cast<size_t>(std::floor(0.025 * last))];
  r.hi = d[static_cast<size_t>(std::floor(0.975 * last))];
  return r;
}

double voc07_ap(const std::vector<double>& scores, const std::vector<int>& positives) {
  BISSL_CHECK(scores.size() == positives.size(), "voc07_ap: expected one 0/1 label per score, found ",
              scores.size(), " scores and ", positives.size(), " labels");
  int64_t npos = 0;
  std::vector<size_t> order;
  for (size_t i = 0; i < positives.size(); ++i) {
    const int p = positives[i];
    BISSL_CHECK(p == 0 || p == 1 || p == -1, "voc07_ap: expected labels 1, 0 or -1 (ignored), found ", p);
    if (p < 0) continue;
    BISSL_CHECK(std::isfinite(scores[i]), "voc07_ap: expected finite scores, found ", scores[i]);
    npos += p;
    order.push_back(i);
  }
  if (npos == 0) return 0.0;
  // Stable so that tied scores keep input order, making the result reproducible.
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return scores[i] > scores[j]; });
  std::vector<double> rec(order.size()), prec(order.size());
  int64_t tp = 0;
  for (size_t r = 0; r < order.size(); ++r) {
    tp += positives[order[r]];
    rec[r] = static_cast<double>(tp) / static_cast<double>(npos);
    prec[r] = static_cast<double>(tp) / static_cast<double>(r + 1);
  }
  // Precision at recall ≥ t is the running max from the end of the ranking.
  for (size_t r = order.size() - 1; r-- > 0;) prec[r] = std::max(prec[r], prec[r + 1]);
  double ap = 0;
  for (int i = 0; i <= 10; ++i) {
    const double t = i / 10.0;
    // Small slack so that a recall of exactly 3/10 counts at t = 0.3.
    auto it = std::lower_bound(rec.begin(), rec.end(), t - 1e-12);
    if (it != rec.end()) ap += prec[static_cast<size_t>(it - rec.begin())];
  }
  return ap / 11.0;
}

double voc07_map(const std::vector<std::vector<double>>& scores_per_class,
                 const std::vector<std::vector<int>>& positives_per_class, int64_t* scored) {
  BISSL_CHECK(!scores_per_class.empty() && scores_per_class.size() == positives_per_class.size(),
              "voc07_map: expected the same non-zero number of classes for scores and labels, found ",
              scores_per_class.size(), " and ", positives_per_class.size());
  double sum = 0;
  int64_t n = 0;
  for (size_t c = 0; c < scores_per_class.size(); ++c) {
    const auto& p = positives_per_class[c];
    if (std::find(p.begin(), p.end(), 1) == p.end()) continue;
    sum += voc07_ap(scores_per_class[c], p);
    ++n;
  }
  BISSL_CHECK(n > 0, "voc07_map: expected a class with at least one positive, found none among ",
              scores_per_class.size());
  if (scored) *scored = n;
  return sum / static_cast<double>(n);
}

double topk_accuracy(const std::vector<double>& logits, int64_t n, int64_t classes,
                     const std::vector<int64_t>& labels, int k) {
  BISSL_CHECK(n > 0 && classes > 0, "topk_accuracy: expected n > 0 and classes > 0, found n = ", n,
              ", classes = ", classes);
  BISSL_CHECK(static_cast<int64_t>(logits.size()) == n * classes, "topk_accuracy: expected ", n, "x",
              classes, " = ", n * classes, " logits, found ", logits.size());
  BISSL_CHECK(static_cast<int64_t>(labels.size()) == n, "topk_accuracy: expected ", n,
              " labels, found ", labels.size());
  BISSL_CHECK(k >= 1, "topk_accuracy: expected k >= 1, found ", k);
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[i];
    BISSL_CHECK(y >= 0 && y < classes, "topk_accuracy: expected labels in [0, ", classes,
                "), found ", y, " at row ", i);
    const double* row = logits.data() + i * classes;
    int64_t above = 0;
    for (int64_t c = 0; c < classes; ++c) above += row[c] > row[y];
    hits += above < k;
  }
  return static_cast<double>(hits) / static_cast<double>(n);
}

}  // namespace bissl::evalstats
