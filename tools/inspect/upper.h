#pragma once
// `bissl-inspect upper`: one BiSSL upper step from files, through
// bilevel::UpperPhase, the code the trainer's upper phase runs
// (docs/inspect.md, "upper"). θP and the pretext heads come from the
// session's --weights (and --head-weights), θD from its own file or as a
// copy of θP, φD from a Linear's state dict; the fixed pretext batch and
// the downstream batch from safetensors batches. Everything written is in
// PyTorch layout, one tensor per parameter name.
#include <string>
#include <vector>

#include "bilevel/trainer.h"
#include "engine/io/safetensors.h"
#include "tools/inspect/session.h"

namespace bissl::inspect {

struct UpperFiles {
  std::string weights_d;   // θD's backbone; empty: a copy of θP
  std::string head_d;      // φD: "weight" [classes, features], "bias" [classes] (torch.nn.Linear; bissl-warmup's head_d.safetensors)
  std::string downstream;  // "images" NCHW (or "images_nhwc") and "labels" i64 [N] or "targets" float [N, classes]
  // The pretext batch is the session's (set_batch): ntxent/byol image i and
  // image i + N/2 are the two views; mae: all images, the mask drawn from
  // --seed as the trainer draws it from the batch seed.
};

struct UpperOutput {
  io::NamedTensors tensors;  // what `upper` writes (names in docs/inspect.md)
  bilevel::UpperStepResult step;
  std::vector<std::string> notes;
};

// Runs one upper step of `o` (variant bissl or ij_discarded; lambda, delta,
// cg_*, clip, ghost_*, cg_updates_bn, cg_linearize, reference_devices are
// read) on the session's models and batch. trace: also every CG direction
// and product (cg.<k>.d.<name>, cg.<k>.hvp.<name>).
UpperOutput run_upper(Session& s, const UpperFiles& files, const bilevel::BilevelOptions& o, bool trace);

// The downstream batch of a file, in the session's dtype and device.
bilevel::DownstreamBatch load_downstream_batch(const std::string& path, DType dtype, Device device);

}  // namespace bissl::inspect
