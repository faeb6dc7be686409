#pragma once
// Statistics for the evaluation stage: mean ± std over seeds, the exact
// two-sample permutation test of the spec, VOC07 11-point AP and top-k
// accuracy. Standard library only (plus engine/error.h), so any tool can link it.
#include <cstdint>
#include <vector>

namespace bissl::evalstats {

struct MeanStd {
  double mean = 0, std = 0;  // std: sample (n − 1) standard deviation, 0 for n = 1
  int64_t n = 0;
};
MeanStd mean_std(const std::vector<double>& x);

// C(n, k); 0 for k < 0 or k > n; throws when it does not fit in int64.
int64_t binomial(int64_t n, int64_t k);

struct PermutationResult {
  double observed = 0;  // mean(b) − mean(a)
  double p_two_sided = 1, p_greater = 1, p_less = 1;
  int64_t assignments = 0;  // C(na + nb, na)
};
// Exact test over every way of splitting the pooled values into groups of
// sizes na and nb. Throws when a group is empty or C(na + nb, na) > 2e8.
PermutationResult permutation_test(const std::vector<double>& a, const std::vector<double>& b);
// Whether permutation_test can enumerate groups of na and nb (C(na + nb, na) <= 2e8).
bool permutation_test_fits(int64_t na, int64_t nb);

// Results in groups: one group per BiSSL stage seed, each holding that stage
// seed's fine-tuning seeds (every group the same size).
using Groups = std::vector<std::vector<double>>;

struct GroupSummary {
  std::vector<MeanStd> groups;  // each group's mean ± std over its members
  MeanStd of_means;             // the group means' mean and (sample) spread
  double within_std = 0;        // pooled within-group std: sqrt(mean of the group variances), 0 for n = 1
  // One-way random-effects variance components (method of moments):
  // between = max(0, var(group means) − within² / n); 0 for one group.
  double between_std = 0;
};
// Throws unless there is at least one group and every group has the same size n >= 1.
GroupSummary group_summary(const Groups& g);

// The permutation test whose unit is the group: the exact test over every
// way of splitting the pooled group means into two arms of Ka and Kb groups
// (C(Ka + Kb, Ka) assignments). Groups must all be one size, so the
// difference of group means is the difference of the arms' means.
PermutationResult group_permutation_test(const Groups& a, const Groups& b);

// The two-level (hierarchical) bootstrap of mean(b) − mean(a): each arm's
// groups are drawn with replacement, then the members within each drawn
// group with replacement. Exact (every equally likely resample enumerated)
// when Ka^Ka·(n^n)^Ka · Kb^Kb·(n^n)^Kb <= exact_limit; otherwise
// `resamples` joint draws from a fixed-seed generator (same numbers on
// every machine).
struct BootstrapResult {
  double observed = 0;           // mean(b) − mean(a)
  double lo = 0, hi = 0;         // the central 95 % interval (2.5th and 97.5th percentiles, lower values)
  double p_not_greater = 1;      // P*(difference <= 0): small when b's gain holds across both levels
  double p_not_less = 1;         // P*(difference >= 0)
  int64_t resamples = 0;         // joint resamples (exact: every pair of per-arm resamples)
  bool exact = false;
};
BootstrapResult two_level_bootstrap(const Groups& a, const Groups& b, int64_t resamples = 100000,
                                    uint64_t seed = 0, int64_t exact_limit = 2000000);

// PASCAL VOC07 11-point interpolated AP: the mean over t = 0, 0.1, ..., 1 of
// the highest precision at recall >= t. positives: 1 (positive), 0
// (negative) or -1 (left out of the ranking: a difficult sample under the
// official devkit's rule). 0 when there are no positives.
double voc07_ap(const std::vector<double>& scores, const std::vector<int>& positives);
// The mean AP over the classes that have at least one positive (as the
// reference: a class without positives is skipped, not scored 0);
// `scored` receives how many classes that was. An error when none has.
double voc07_map(const std::vector<std::vector<double>>& scores_per_class,
                 const std::vector<std::vector<int>>& positives_per_class, int64_t* scored = nullptr);

// logits: n × classes, row-major. A label is within the top k when fewer
// than k classes score strictly higher (ties count in its favour).
double topk_accuracy(const std::vector<double>& logits, int64_t n, int64_t classes,
                     const std::vector<int64_t>& labels, int k);

}  // namespace bissl::evalstats
