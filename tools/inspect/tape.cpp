#include "tools/inspect/tape.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <unordered_set>

namespace bissl::inspect {

std::vector<std::shared_ptr<Node>> collect_tape(const Tensor& out) {
  std::vector<std::shared_ptr<Node>> r;
  if (!out.defined() || !out.grad_fn()) return r;
  std::unordered_set<Node*> seen{out.grad_fn().get()};
  std::vector<std::shared_ptr<Node>> stack{out.grad_fn()};
  while (!stack.empty()) {
    auto n = stack.back();
    stack.pop_back();
    r.push_back(n);
    for (auto& e : n->next)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node);
  }
  std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a->seq > b->seq; });
  return r;
}

size_t node_saved_bytes(const Node& n) {
  size_t b = 0;
  for (auto& t : n.saved_inputs)
    if (t.defined()) b += t.nbytes();
  for (auto& t : n.saved_outputs)
    if (t.defined()) b += t.nbytes();
  return b;
}

std::string compact_shape(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) b /= 1024.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, unit[u]);
  return buf;
}

TapeTotals tape_totals(const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names) {
  TapeTotals t;
  t.nodes = tape.size();
  std::set<const Storage*> params, seen;
  for (auto& [impl, name] : names)
    if (impl->storage) params.insert(impl->storage.get());
  auto hold = [&](const Tensor& x) {
    if (!x.defined()) return;
    const Storage* s = x.impl().storage.get();
    if (!seen.insert(s).second) return;
    t.held_bytes += s->nbytes;
    if (params.count(s)) t.held_param_bytes += s->nbytes;
  };
  for (auto& n : tape) {
    t.saved_sum += node_saved_bytes(*n);
    for (auto& x : n->saved_inputs) hold(x);
    for (auto& x : n->saved_outputs) hold(x);
  }
  t.storages = seen.size();
  return t;
}

namespace {

const char* node_dtype(const Node& n) {
  if (!n.out_dtypes.empty()) return dtype_name(n.out_dtypes[0]);
  return n.in_dtypes.empty() ? "?" : dtype_name(n.in_dtypes[0]);
}

std::string input_label(const Node& n, size_t i, const LeafNames& names) {
  std::string s;
  const auto& e = n.next[i];
  if (e.leaf) {
    auto it = names.find(e.leaf.get());
    if (it != names.end()) s = it->second;
  }
  s += compact_shape(n.in_shapes[i]);
  if (!n.out_dtypes.empty() && n.in_dtypes[i] != n.out_dtypes[0]) s += std::string(":") + dtype_name(n.in_dtypes[i]);
  return s;
}

std::string dot_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r;
}

}  // namespace

void print_tape(std::ostream& os, const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names,
                bool show_attrs, bool nodes_too) {
  char buf[160];
  if (nodes_too) {
    std::snprintf(buf, sizeof buf, "%8s  %-24s %-5s %11s  %s\n", "seq", "op", "dtype", "saved", "inputs -> outputs");
    os << buf;
    for (auto& n : tape) {
      std::string ins, outs;
      for (size_t i = 0; i < n->in_shapes.size(); ++i) ins += (i ? ", " : "") + input_label(*n, i, names);
      for (size_t i = 0; i < n->out_shapes.size(); ++i) {
        outs += (i ? ", " : "") + compact_shape(n->out_shapes[i]);
        if (i < n->out_dtypes.size() && n->out_dtypes[i] != n->out_dtypes[0])
          outs += std::string(":") + dtype_name(n->out_dtypes[i]);
      }
      std::snprintf(buf, sizeof buf, "%8llu  %-24s %-5s %11s  ", (unsigned long long)n->seq, n->op->name.c_str(),
                    node_dtype(*n), human_bytes(double(node_saved_bytes(*n))).c_str());
      os << buf << ins << " -> " << outs;
      if (show_attrs) {
        std::string a = n->attrs.str();
        if (!a.empty()) os << "  {" << a << "}";
      }
      os << "\n";
    }
    os << "\n";
  }

  // Per op: count and saved bytes, largest first.
  struct Row {
    size_t count = 0, saved = 0;
  };
  std::map<std::string, Row> per_op;
  for (auto& n : tape) {
    auto& r = per_op[n->op->name];
    ++r.count;
    r.saved += node_saved_bytes(*n);
  }
  std::vector<std::pair<std::string, Row>> rows(per_op.begin(), per_op.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second.saved != b.second.saved ? a.second.saved > b.second.saved : a.first < b.first;
  });
  std::snprintf(buf, sizeof buf, "%-24s %6s %12s\n", "op", "nodes", "saved");
  os << buf;
  for (auto& [name, r] : rows) {
    std::snprintf(buf, sizeof buf, "%-24s %6zu %12s\n", name.c_str(), r.count, human_bytes(double(r.saved)).c_str());
    os << buf;
  }
  TapeTotals t = tape_totals(tape, names);
  os << "\n";
  os << "nodes: " << t.nodes << " (" << per_op.size() << " distinct ops)\n";
  os << "saved for backward, summed over nodes: " << human_bytes(double(t.saved_sum)) << " (" << t.saved_sum
     << " bytes; a tensor saved by two nodes counts twice)\n";
  os << "held alive by the tape: " << human_bytes(double(t.held_bytes)) << " in " << t.storages
     << " distinct storages, of which parameters " << human_bytes(double(t.held_param_bytes)) << ", activations "
     << human_bytes(double(t.held_bytes - t.held_param_bytes)) << "\n";
}

void write_dot(const std::string& path, const std::vector<std::shared_ptr<Node>>& tape, const LeafNames& names,
               const Tensor& out) {
  std::ofstream f(path);
  BISSL_CHECK(f, "--dot: cannot open ", path, " for writing");
  f << "// bissl-inspect graph: the tape of one forward pass, data flowing downwards.\n"
       "// Boxes: ops (#seq, attributes, bytes saved); ellipses: parameters; plain text: inputs\n"
       "// that need no gradient. Edges: tensors, labelled with their shapes.\n"
       "// Render: dot -Tsvg graph.dot -o graph.svg\n";
  f << "digraph tape {\n"
       "  graph [rankdir=TB, fontname=\"Helvetica\"];\n"
       "  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n"
       "  edge [fontname=\"Helvetica\", fontsize=9];\n";
  std::map<const TensorImpl*, std::string> leaf_ids;
  for (auto it = tape.rbegin(); it != tape.rend(); ++it) {  // oldest first reads better in the file
    const Node& n = **it;
    std::string label = str("#", n.seq, " ", n.op->name);
    std::string a = n.attrs.str();
    if (!a.empty()) label += "\\n" + dot_escape(a);
    size_t sb = node_saved_bytes(n);
    if (sb) label += "\\nsaved " + human_bytes(double(sb));
    f << "  n" << n.seq << " [label=\"" << label << "\"];\n";
    for (size_t i = 0; i < n.next.size(); ++i) {
      const auto& e = n.next[i];
      std::string shape = compact_shape(n.in_shapes[i]);
      if (!n.out_dtypes.empty() && n.in_dtypes[i] != n.out_dtypes[0]) shape += std::string(" ") + dtype_name(n.in_dtypes[i]);
      if (e.node) {
        std::string lab = shape;
        if (e.node->out_shapes.size() > 1) lab = str("out ", e.output_nr, ": ", shape);
        f << "  n" << e.node->seq << " -> n" << n.seq << " [label=\"" << lab << "\"];\n";
      } else if (e.leaf) {
        auto id = leaf_ids.find(e.leaf.get());
        if (id == leaf_ids.end()) {
          std::string pid = str("p", leaf_ids.size());
          id = leaf_ids.emplace(e.leaf.get(), pid).first;
          auto nm = names.find(e.leaf.get());
          std::string lab = nm != names.end() ? nm->second : std::string("leaf");
          f << "  " << pid << " [label=\"" << dot_escape(lab) << "\\n" << compact_shape(e.leaf->shape)
            << "\", shape=ellipse, style=filled, fillcolor=\"#dde8f5\"];\n";
        }
        f << "  " << id->second << " -> n" << n.seq << " [label=\"" << shape << "\"];\n";
      } else {
        f << "  c" << n.seq << "_" << i << " [label=\"" << shape << "\", shape=plaintext, fontcolor=\"#666666\"];\n";
        f << "  c" << n.seq << "_" << i << " -> n" << n.seq << " [style=dashed, color=\"#999999\"];\n";
      }
    }
  }
  if (out.defined() && out.grad_fn()) {
    f << "  out [label=\"loss\\n" << compact_shape(out.shape()) << "\", shape=doublecircle];\n";
    f << "  n" << out.grad_fn()->seq << " -> out;\n";
  }
  f << "}\n";
  BISSL_CHECK(f.good(), "--dot: writing ", path, " failed");
}

}  // namespace bissl::inspect
