// Collectives across the ranks of a group (engine/dist/comm.h) as ops. Each
// rank's copy of an output is its own variable, so the rules are those of
// linear maps between the ranks' stacked values (docs/distributed.md §2):
//   all_reduce_sum      JVP all_reduce_sum      VJP all_reduce_sum
//   all_gather          JVP all_gather          VJP reduce_scatter_sum
//   reduce_scatter_sum  JVP reduce_scatter_sum  VJP all_gather
//   broadcast(root)     JVP broadcast           VJP all_reduce_sum kept on the root (×0 elsewhere)
// The rules call the ops, so forward-over-reverse and reverse-over-reverse
// issue the collectives of the tangents and of the second backward by
// themselves, on every rank alike. A rule never skips a collective on one
// rank only: a missing tangent is a zero that still takes part.
#include <cstdlib>
#include <functional>
#include <string>

#include "engine/dist/comm.h"
#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

int group_of(const Attrs& a) { return int(a.i("group")); }

// With BISSL_DIST_DEBUG set, every collective first checks that all ranks
// call the same op on the same shape and dtype: a mismatch is an error on
// every rank that names both calls, where it would otherwise hang or mix data.
void debug_check(const char* op, const Tensor& x, dist::Comm& c) {
  static const bool on = [] {
    const char* v = std::getenv("BISSL_DIST_DEBUG");
    return v && *v && std::string(v) != "0";
  }();
  if (!on || c.size() == 1) return;
  constexpr int kSlots = 8;
  int64_t mine[kSlots] = {int64_t(std::hash<std::string>{}(op)), int64_t(x.dtype()), x.dim()};
  for (int64_t i = 0; i < x.dim() && i + 3 < kSlots; ++i) mine[i + 3] = x.shape()[size_t(i)];
  std::vector<int64_t> all(size_t(kSlots * c.size()));
  c.all_gather(mine, all.data(), int64_t(sizeof mine));
  for (int r = 0; r < c.size(); ++r)
    for (int k = 0; k < kSlots; ++k)
      BISSL_CHECK(all[size_t(r * kSlots + k)] == mine[k], "[rank ", c.rank(), "] ", op, " on ",
                  shape_str(x.shape()), " ", dtype_name(x.dtype()), ": rank ", r,
                  " called another collective or shape at this point (BISSL_DIST_DEBUG)");
}

Device dev() { return kern::current(); }

OpDef collective_op(const std::string& name, const std::string& doc, std::vector<std::string> attrs, ForwardFn fwd,
                    std::function<Tensor(const Tensor&, const OpCtx&)> vjp,
                    std::function<Tensor(const Tensor&, const OpCtx&)> jvp) {
  OpDef op = make_op(name, 1, 1, doc);
  op.attrs = std::move(attrs);
  op.forward[0] = std::move(fwd);
  // One output: its cotangent is defined whenever the rule runs.
  op.vjp = [vjp](const OpCtx& c, const std::vector<Tensor>& g) { return std::vector<Tensor>{vjp(g[0], c)}; };
  op.jvp = [jvp](const OpCtx& c, const std::vector<Tensor>& t) {
    return std::vector<Tensor>{jvp(tan_or_zero(t[0], c.input_shape(0), c.input_dtype(0), dev()), c)};
  };
  return op;
}

}  // namespace

void register_collective(OpRegistry& r) {
  r.add(collective_op(
      "all_reduce_sum", "the sum over the group's ranks, on every rank", {"group: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        dist::Comm& c = dist::group(group_of(a));
        debug_check("all_reduce_sum", in[0], c);
        Tensor y = in[0].clone();
        dist::all_reduce_sum_(y, group_of(a));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return all_reduce_sum(g, group_of(c.attrs)); },
      [](const Tensor& t, const OpCtx& c) { return all_reduce_sum(t, group_of(c.attrs)); }));

  r.add(collective_op(
      "all_gather", "[n, ...] on each rank -> [size*n, ...], the ranks' blocks in rank order", {"group: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& x = in[0];
        dist::Comm& c = dist::group(group_of(a));
        BISSL_CHECK(x.dim() >= 1, "all_gather: expected a tensor with a leading axis, found a scalar");
        debug_check("all_gather", x, c);
        if (c.size() == 1) return std::vector<Tensor>{x.clone()};
        Shape s = x.shape();
        s[0] *= c.size();
        Tensor h = dist::to_wire(x, x.dtype());
        Tensor out = empty(s, x.dtype(), Device::CPU);
        c.all_gather(h.raw(), out.raw(), int64_t(h.nbytes()));
        return std::vector<Tensor>{dist::from_wire(out, x.dtype(), dev())};
      },
      [](const Tensor& g, const OpCtx& c) { return reduce_scatter_sum(g, group_of(c.attrs)); },
      [](const Tensor& t, const OpCtx& c) { return all_gather(t, group_of(c.attrs)); }));

  r.add(collective_op(
      "reduce_scatter_sum", "[size*n, ...] -> [n, ...]: rank r gets the sum over ranks of block r", {"group: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& x = in[0];
        dist::Comm& c = dist::group(group_of(a));
        BISSL_CHECK(x.dim() >= 1 && x.shape()[0] % c.size() == 0, "reduce_scatter_sum: expected a leading axis ",
                    "divisible by the ", c.size(), " ranks, found shape ", shape_str(x.shape()));
        debug_check("reduce_scatter_sum", x, c);
        if (c.size() == 1) return std::vector<Tensor>{x.clone()};
        Shape s = x.shape();
        s[0] /= c.size();
        const DType wire = dist::wire_dtype(x.dtype());
        Tensor h = dist::to_wire(x, wire);
        Tensor out = empty(s, wire, Device::CPU);
        c.reduce_scatter_sum(h.raw(), out.raw(), out.numel(), wire);
        return std::vector<Tensor>{dist::from_wire(out, x.dtype(), dev())};
      },
      [](const Tensor& g, const OpCtx& c) { return all_gather(g, group_of(c.attrs)); },
      [](const Tensor& t, const OpCtx& c) { return reduce_scatter_sum(t, group_of(c.attrs)); }));

  r.add(collective_op(
      "broadcast", "the root rank's x on every rank", {"group: int", "root: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        dist::Comm& c = dist::group(group_of(a));
        debug_check("broadcast", in[0], c);
        Tensor y = in[0].clone();
        dist::broadcast_(y, int(a.i("root")), group_of(a));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        // The sum of every rank's cotangent belongs to the root; the others'
        // copies were not read. ×0 rather than fresh zeros keeps the graph
        // (and so a second backward's collectives) the same on every rank.
        const int gid = group_of(c.attrs);
        const bool root = dist::group(gid).rank() == c.attrs.i("root");
        return mul(all_reduce_sum(g, gid), root ? 1.0 : 0.0);
      },
      [](const Tensor& t, const OpCtx& c) { return broadcast(t, int(c.attrs.i("root")), group_of(c.attrs)); }));
}

}  // namespace ops

namespace {
const OpDef& collective(const char* n) { return OpRegistry::get().op(n); }
int resolve(int group) { return group < 0 ? dist::current_group() : group; }
}  // namespace

Tensor all_reduce_sum(const Tensor& x, int group) {
  static const OpDef& op = collective("all_reduce_sum");
  return call_op(op, {x}, {{"group", int64_t(resolve(group))}})[0];
}
Tensor all_gather(const Tensor& x, int group) {
  static const OpDef& op = collective("all_gather");
  return call_op(op, {x}, {{"group", int64_t(resolve(group))}})[0];
}
Tensor reduce_scatter_sum(const Tensor& x, int group) {
  static const OpDef& op = collective("reduce_scatter_sum");
  return call_op(op, {x}, {{"group", int64_t(resolve(group))}})[0];
}
Tensor broadcast(const Tensor& x, int root, int group) {
  static const OpDef& op = collective("broadcast");
  return call_op(op, {x}, {{"group", int64_t(resolve(group))}, {"root", int64_t(root)}})[0];
}

}  // namespace bissl
