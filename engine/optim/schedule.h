#pragma once
// Learning-rate schedule: linear warm-up, then cosine decay.
//
// With W = warmup_steps, T = total_steps (T includes the warm-up), step s
// counted from 0 (the number of optimiser steps already taken):
//   s <  W:       lr = base_lr · (s + 1) / W
//   W <= s < T:   lr = final_lr + ½ (base_lr − final_lr) (1 + cos(π (s − W) / (T − W)))
//   s >= T:       lr = final_lr
// so the first step already has a non-zero lr, step W has exactly base_lr,
// and the cosine reaches final_lr at s = T. W = 0 is a plain cosine.
// Typical use: opt.lr = sched.lr_at(opt.steps()); opt.step();
//
// stepped_after: the schedule as PyTorch's LambdaLR runs it when the
// scheduler steps after the optimiser (BiSSL's reference): step s = 0 at
// base_lr (the optimiser's construction lr, even inside the warm-up), step
// s ≥ 1 at f(s) with f(t) = base_lr · t / W for t < W and the cosine above
// after it.
#include <cstdint>

namespace bissl::optim {

struct WarmupCosine {
  double base_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double final_lr = 0.0;
  bool stepped_after = false;

  // Throws bissl::Error when warmup_steps < 0, total_steps < warmup_steps
  // or step < 0.
  double lr_at(int64_t step) const;
};

}  // namespace bissl::optim
