// Checkpoint state: a safetensors file loaded as the state of a module
// (shapes, dtypes, names) and of each optimiser (steps, lr, per-parameter
// buffers and step counts) — what a resume reads before training goes on.
#include "engine/io/safetensors.h"
#include "engine/nn/layers.h"
#include "engine/nn/state_io.h"
#include "engine/optim/optimizer.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_file("input.ckpt", data, size);
  fuzz::refused_or_read([&] {
    io::SafetensorsFile f = io::load_safetensors(path);
    Generator g(0);
    nn::Linear lin(3, 2, g);
    fuzz::refused_or_read([&] { lin.load_state_dict(nn::with_prefix(f, "model.")); });
    std::vector<Tensor> params = lin.parameters();
    optim::SGD sgd(params, 0.1, 0.9, 1e-4);
    optim::LARS lars(params, 0.1);
    optim::AdamW adamw(params, 1e-3);
    for (optim::Optimizer* o : std::initializer_list<optim::Optimizer*>{&sgd, &lars, &adamw}) {
      fuzz::refused_or_read([&] {
        o->load_state_dict(nn::with_prefix(f, "optim."));
        // A loaded state must be usable: one step with zero gradients.
        for (Tensor& p : params) p.set_grad(zeros_like(p));
        o->step();
      });
    }
  });
  return 0;
}
