// Registers every op family; called once when the registry is first used
// (explicit calls, so no static initialiser can be dropped by the linker).
#include "engine/op_registry.h"

namespace bissl {
namespace ops {
void register_elementwise(OpRegistry&);
void register_reduce(OpRegistry&);
void register_shape(OpRegistry&);
void register_linalg(OpRegistry&);
void register_conv_pool(OpRegistry&);
void register_norm(OpRegistry&);
void register_softmax_loss(OpRegistry&);
void register_random(OpRegistry&);
void register_collective(OpRegistry&);
}  // namespace ops

void register_all_ops(OpRegistry& r) {
  ops::register_elementwise(r);
  ops::register_reduce(r);
  ops::register_shape(r);
  ops::register_linalg(r);
  ops::register_conv_pool(r);
  ops::register_norm(r);
  ops::register_softmax_loss(r);
  ops::register_random(r);
  ops::register_collective(r);
}

}  // namespace bissl
