#include "engine/optim/schedule.h"

#include <cmath>

#include "engine/error.h"

namespace bissl::optim {

double WarmupCosine::lr_at(int64_t step) const {
  BISSL_CHECK(warmup_steps >= 0, "WarmupCosine: expected warmup_steps >= 0, found ", warmup_steps);
  BISSL_CHECK(total_steps >= warmup_steps, "WarmupCosine: expected total_steps >= warmup_steps, found ", total_steps,
              " < ", warmup_steps);
  BISSL_CHECK(step >= 0, "WarmupCosine: expected step >= 0, found ", step);
  if (stepped_after && step == 0) return base_lr;
  if (step < warmup_steps) return base_lr * double(stepped_after ? step : step + 1) / double(warmup_steps);
  if (step >= total_steps) return final_lr;
  double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + std::cos(3.14159265358979323846 * progress));
}

}  // namespace bissl::optim
