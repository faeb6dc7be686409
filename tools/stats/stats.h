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
