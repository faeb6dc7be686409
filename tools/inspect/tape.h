#pragma once
// The recorded tape of one forward pass, read back from the graph that hangs
// off the loss (Node::next edges; see engine/autograd.h): listing, totals of
// the memory the nodes keep alive for the backward pass, and Graphviz DOT.
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "engine/autograd.h"

namespace bissl::inspect {

// Names of leaf tensors (parameters), for labelling inputs.
using LeafNames = std::map<const TensorImpl*, std::string>;

// Every node that `out` was computed through, newest first (by seq).
std::vector<std::shared_ptr<Node>> collect_tape(const Tensor& out);

// Bytes of the tensors a node keeps for its VJP (saved inputs + outputs),
// counted per node: a tensor saved by two nodes counts twice.
size_t node_saved_bytes(const Node& n);

// "[8,16,16,3]"
std::string compact_shape(const Shape& s);
// "1.50 MiB"
std::string human_bytes(double b);

struct TapeTotals {
  size_t nodes = 0;
  size_t saved_sum = 0;       // sum of node_saved_bytes
  size_t held_bytes = 0;      // distinct storages among the saved tensors
  size_t held_param_bytes = 0;  // of which are parameters (alive anyway)
  size_t storages = 0;
};
TapeTotals tape_totals(const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names);

// One line per node, newest first, then totals and a per-op table.
void print_tape(std::ostream& os, const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names,
                bool show_attrs, bool nodes_too);

// Graphviz: a box per op, an ellipse per parameter, plain text for inputs
// that need no gradient, edges labelled with the tensor's shape.
void write_dot(const std::string& path, const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names,
               const Tensor& out);

}  // namespace bissl::inspect
