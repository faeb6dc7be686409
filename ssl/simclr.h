#pragma once
// SimCLR: NT-Xent over the 2N projected views (BISSL_SPEC.md: temperature
// 0.5, projector 2048 -> 256 (BN, ReLU) -> 256 (BN, ReLU) -> 256, no bias).
//
// State dict of the objective: "head.projector.0.weight", ... (the reference
// code's SimCLR.head, see models/heads.h for the projector's names).
#include <cstdint>
#include <memory>

#include "engine/random.h"
#include "models/heads.h"
#include "ssl/objective.h"

namespace bissl::ssl {

// NT-Xent of unnormalised projections z1, z2 [N, d] (row i of z1 and row i
// of z2 are the two views of image i). With z = l2_normalize([z1; z2]) [2N, d]
// and s = z·zᵀ/τ with the diagonal masked out (a sample is not its own
// negative: −1e9, whose exp is exactly 0, as in the reference's NTXent), the
// loss is the mean over the 2N rows of the cross-entropy of row i against
// its positive column (i + N) mod 2N. N = 1 gives 0 (no negatives).
Tensor nt_xent(const Tensor& z1, const Tensor& z2, double temperature);

// The same loss over the whole job's batch when each of the group's ranks
// holds a contiguous block of it (rank r: images [r·n, (r+1)·n) of the
// global B = ranks·n): the projections are gathered (all_gather: every
// anchor's negatives come from every rank), rank r's anchors are its own 2n
// rows, and it returns its share, its anchors' cross-entropies summed over
// 2B: the shares add up to nt_xent of the global batch, and gradients and
// H·v summed over the ranks are those of that loss (the gather's VJP sums
// the cotangents over ranks; its JVP gathers the tangents). One rank (or
// group -1 naming a one-rank group): exactly nt_xent.
Tensor nt_xent_gathered(const Tensor& z1, const Tensor& z2, double temperature, int group = -1);

struct SimclrOptions {
  int64_t hidden_dim = 256;  // projector hidden width
  int64_t out_dim = 256;     // projection size
  int proj_layers = 3;       // Linear layers in the projector
  double temperature = 0.5;
};

class SimCLR : public Objective {
 public:
  // feature_dim: size of the backbone's pooled output (2048 for ResNet-50).
  SimCLR(int64_t feature_dim, Generator& g, const SimclrOptions& opts = {});

  // nt_xent(projector(backbone(view1)), projector(backbone(view2)), τ): each
  // view goes through backbone and projector on its own, so batch norm sees
  // per-view batch statistics, as in the reference.
  Tensor loss(nn::Layer& backbone, const SslBatch& batch) override;
  bool can_split() const override { return true; }
  SplitLoss split(nn::Layer& backbone, const SslBatch& batch) override;  // z = [z1; z2]
  models::NamedSequential& head() override { return *head_; }
  models::MLPHead& projector() { return *projector_; }
  std::string type_name() const override { return "SimCLR"; }
  std::string extra_repr() const override;

  SimclrOptions options;

 private:
  std::shared_ptr<models::NamedSequential> head_;
  std::shared_ptr<models::MLPHead> projector_;
};

}  // namespace bissl::ssl
