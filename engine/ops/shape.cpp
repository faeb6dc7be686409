// Movement and indexing: reshape (a view), permute, slice, concat, pad,
// index_select / index_add, gather / scatter_add, take / put_add.
// Each linear op's VJP is its adjoint, and its JVP is itself on the tangent.
#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

Shape resolve_shape(const Shape& in, Shape s) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      BISSL_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(s));
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    BISSL_CHECK(known > 0 && numel(in) % known == 0, "reshape: cannot reshape ", shape_str(in), " to ", shape_str(s));
    s[size_t(infer)] = numel(in) / known;
  }
  BISSL_CHECK(numel(s) == numel(in), "reshape: cannot reshape ", shape_str(in), " (", numel(in), " elements) to ",
              shape_str(s), " (", numel(s), " elements)");
  return s;
}

int64_t esize(const Tensor& t) { return int64_t(dtype_size(t.dtype())); }

// Copies x into the box of `dst` starting at `start` (per-dim), with per-dim
// steps on the destination side.
void copy_into(Tensor& dst, const Tensor& x, const std::vector<int64_t>& start, const std::vector<int64_t>& step) {
  auto ds = contiguous_strides(dst.shape());
  int64_t off = 0;
  std::vector<int64_t> st(ds.size());
  for (size_t i = 0; i < ds.size(); ++i) off += start[i] * ds[i], st[i] = ds[i] * step[i];
  kern::strided_copy(static_cast<char*>(dst.raw()) + off * esize(dst), st, x.raw(), contiguous_strides(x.shape()),
                    x.shape(), esize(x));
}

// Copies a box of x (start, step per dim) of shape `out`.
Tensor copy_from(const Tensor& x, const Shape& out, const std::vector<int64_t>& start,
                 const std::vector<int64_t>& step) {
  Tensor y = out_empty(out, x.dtype());
  auto xs = contiguous_strides(x.shape());
  int64_t off = 0;
  std::vector<int64_t> st(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) off += start[i] * xs[i], st[i] = xs[i] * step[i];
  kern::strided_copy(y.raw(), contiguous_strides(out), static_cast<const char*>(x.raw()) + off * esize(x), st, out,
                    esize(x));
  return y;
}

int64_t slice_len(int64_t start, int64_t end, int64_t step) {
  return end > start ? (end - start + step - 1) / step : 0;
}

void check_index(const Tensor& idx, int64_t n, const char* op) {
  BISSL_CHECK(idx.dtype() == DType::I64, op, ": expected i64 indices, found ", dtype_name(idx.dtype()));
  kern::check_indices(idx.data<int64_t>(), idx.numel(), n, op);
}

OpDef linear_pair_op(const std::string& name, int nin, const std::string& doc, std::vector<std::string> attrs,
                     ForwardFn fwd, std::function<Tensor(const Tensor&, const OpCtx&)> adjoint,
                     std::function<Tensor(const Tensor&, const OpCtx&)> self) {
  OpDef op = make_op(name, nin, 1, doc);
  op.attrs = std::move(attrs);
  op.forward[0] = std::move(fwd);
  if (nin == 2) {
    op.nondiff_inputs = {1};
    op.save_inputs = {1};
  }
  op.vjp = [adjoint, nin](const OpCtx& c, const std::vector<Tensor>& g) {
    std::vector<Tensor> r(static_cast<size_t>(nin));
    r[0] = adjoint(g[0], c);
    return r;
  };
  op.jvp = [self](const OpCtx& c, const std::vector<Tensor>& t) { return std::vector<Tensor>{self(t[0], c)}; };
  return op;
}

}  // namespace

void register_shape(OpRegistry& r) {
  r.add(linear_pair_op(
      "reshape", 1, "same data, new shape (a view: shares storage)", {"shape: ints"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        Tensor y = in[0].detach();
        y.impl().shape = resolve_shape(in[0].shape(), a.ints("shape"));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return reshape(g, c.input_shape(0)); },
      [](const Tensor& t, const OpCtx& c) { return reshape(t, c.attrs.ints("shape")); }));

  r.add(linear_pair_op(
      "permute", 1, "reorder axes (copies)", {"perm: ints"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& x = in[0];
        const auto& perm = a.ints("perm");
        BISSL_CHECK(int64_t(perm.size()) == x.dim(), "permute: expected ", x.dim(), " axes, found ", perm.size());
        std::vector<bool> seen(perm.size());
        Shape out(perm.size());
        auto xs = contiguous_strides(x.shape());
        std::vector<int64_t> st(perm.size());
        for (size_t i = 0; i < perm.size(); ++i) {
          int64_t p = normalize_axis(perm[i], x.dim(), "permute");
          BISSL_CHECK(!seen[size_t(p)], "permute: axis ", p, " repeated");
          seen[size_t(p)] = true;
          out[i] = x.shape()[size_t(p)];
          st[i] = xs[size_t(p)];
        }
        Tensor y = out_empty(out, x.dtype());
        kern::strided_copy(y.raw(), contiguous_strides(out), x.raw(), st, out, esize(x));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        const auto& perm = c.attrs.ints("perm");
        std::vector<int64_t> inv(perm.size());
        for (size_t i = 0; i < perm.size(); ++i)
          inv[size_t(normalize_axis(perm[i], int64_t(perm.size()), "permute"))] = int64_t(i);
        return permute(g, inv);
      },
      [](const Tensor& t, const OpCtx& c) { return permute(t, c.attrs.ints("perm")); }));

  r.add(linear_pair_op(
      "slice", 1, "x[start:end:step] along one axis (copies)", {"axis: int", "start: int", "end: int", "step: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& x = in[0];
        int64_t axis = normalize_axis(a.i("axis"), x.dim(), "slice");
        int64_t n = x.shape()[size_t(axis)], start = a.i("start"), end = a.i("end"), step = a.i("step");
        BISSL_CHECK(step > 0 && start >= 0 && end <= n && start <= end, "slice: expected 0 <= start <= end <= ", n,
                    " and step > 0, found ", start, ":", end, ":", step);
        Shape out = x.shape();
        out[size_t(axis)] = slice_len(start, end, step);
        std::vector<int64_t> st(size_t(x.dim()), 0), sp(size_t(x.dim()), 1);
        st[size_t(axis)] = start, sp[size_t(axis)] = step;
        return std::vector<Tensor>{copy_from(x, out, st, sp)};
      },
      [](const Tensor& g, const OpCtx& c) {
        return call_op("slice_backward", {g},
                       {{"axis", c.attrs.i("axis")}, {"start", c.attrs.i("start")}, {"step", c.attrs.i("step")},
                        {"shape", c.input_shape(0)}})[0];
      },
      [](const Tensor& t, const OpCtx& c) {
        return slice(t, c.attrs.i("axis"), c.attrs.i("start"), c.attrs.i("end"), c.attrs.i("step"));
      }));

  r.add(linear_pair_op(
      "slice_backward", 1, "zeros of `shape` with g written at start::step along axis (adjoint of slice)",
      {"axis: int", "start: int", "step: int", "shape: ints"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& g = in[0];
        Tensor y = out_zeros(a.ints("shape"), g.dtype());
        int64_t axis = normalize_axis(a.i("axis"), y.dim(), "slice_backward");
        std::vector<int64_t> st(size_t(y.dim()), 0), sp(size_t(y.dim()), 1);
        st[size_t(axis)] = a.i("start"), sp[size_t(axis)] = a.i("step");
        copy_into(y, g, st, sp);
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        int64_t axis = c.attrs.i("axis"), start = c.attrs.i("start"), step = c.attrs.i("step");
        int64_t len = c.input_shape(0)[size_t(normalize_axis(axis, int64_t(c.input_shape(0).size()), "slice"))];
        return slice(g, axis, start, start + (len - 1) * step + 1, step);
      },
      [](const Tensor& t, const OpCtx& c) {
        return call_op("slice_backward", {t}, c.attrs)[0];
      }));

  {
    OpDef op = make_op("concat", -1, 1, "join tensors along an axis");
    op.attrs = {"axis: int"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      BISSL_CHECK(!in.empty(), "concat: expected at least one tensor, found none");
      int64_t axis = normalize_axis(a.i("axis"), in[0].dim(), "concat");
      Shape out = in[0].shape();
      out[size_t(axis)] = 0;
      for (auto& t : in) {
        BISSL_CHECK(t.dim() == in[0].dim() && t.dtype() == in[0].dtype(), "concat: tensors differ in rank or dtype (",
                    shape_str(t.shape()), " ", dtype_name(t.dtype()), " vs ", shape_str(in[0].shape()), " ",
                    dtype_name(in[0].dtype()), ")");
        for (int64_t d = 0; d < t.dim(); ++d)
          BISSL_CHECK(d == axis || t.shape()[size_t(d)] == in[0].shape()[size_t(d)], "concat: shapes ",
                      shape_str(t.shape()), " and ", shape_str(in[0].shape()), " differ outside axis ", axis);
        out[size_t(axis)] += t.shape()[size_t(axis)];
      }
      Tensor y = out_empty(out, in[0].dtype());
      std::vector<int64_t> st(out.size(), 0), sp(out.size(), 1);
      for (auto& t : in) {
        copy_into(y, t, st, sp);
        st[size_t(axis)] += t.shape()[size_t(axis)];
      }
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      int64_t axis = normalize_axis(c.attrs.i("axis"), g[0].dim(), "concat");
      std::vector<Tensor> r;
      int64_t off = 0;
      for (int i = 0; i < c.num_inputs(); ++i) {
        int64_t n = c.input_shape(i)[size_t(axis)];
        r.push_back(c.needs_grad(i) ? slice(g[0], axis, off, off + n) : Tensor());
        off += n;
      }
      return r;
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      std::vector<Tensor> ts;
      for (int i = 0; i < c.num_inputs(); ++i) ts.push_back(tan_or_zero(t[size_t(i)], c.input_shape(i), c.input_dtype(i), c.output(0).device()));
      return std::vector<Tensor>{concat(ts, c.attrs.i("axis"))};
    };
    r.add(std::move(op));
  }

  r.add(linear_pair_op(
      "pad", 1, "constant padding; pads[2i], pads[2i+1] before/after dim i; negative pads crop",
      {"pads: ints", "value: float"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor& x = in[0];
        const auto& p = a.ints("pads");
        BISSL_CHECK(int64_t(p.size()) == 2 * x.dim(), "pad: expected ", 2 * x.dim(), " pad values for rank ", x.dim(),
                    ", found ", p.size());
        Shape out = x.shape(), box = x.shape();
        std::vector<int64_t> src(out.size()), dst(out.size()), one(out.size(), 1);
        for (size_t i = 0; i < out.size(); ++i) {
          out[i] = x.shape()[i] + p[2 * i] + p[2 * i + 1];
          BISSL_CHECK(out[i] >= 0, "pad: dim ", i, " would become negative");
          src[i] = std::max<int64_t>(0, -p[2 * i]);
          dst[i] = std::max<int64_t>(0, p[2 * i]);
          box[i] = std::max<int64_t>(0, std::min(x.shape()[i] - src[i], out[i] - dst[i]));
        }
        Tensor y = out_full(out, a.f("value"), x.dtype());
        if (numel(box) > 0) copy_into(y, copy_from(x, box, src, one), dst, one);
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        auto p = c.attrs.ints("pads");
        for (auto& v : p) v = -v;
        return pad(g, p, 0.0);
      },
      [](const Tensor& t, const OpCtx& c) { return pad(t, c.attrs.ints("pads"), 0.0); }));

  r.add(linear_pair_op(
      "index_select", 2, "x[..., index, ...] along axis (index: i64 vector)", {"axis: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &x = in[0], &idx = in[1];
        int64_t axis = normalize_axis(a.i("axis"), x.dim(), "index_select");
        BISSL_CHECK(idx.dim() == 1, "index_select: expected a 1-D index, found shape ", shape_str(idx.shape()));
        Mid m = mid_of(x.shape(), axis);
        check_index(idx, m.n, "index_select");
        Shape out = x.shape();
        out[size_t(axis)] = idx.numel();
        Tensor y = out_empty(out, x.dtype());
        if (x.dtype() == DType::I64) {  // labels and indices select too (not differentiated)
          kern::index_select<int64_t>(x.data<int64_t>(), idx.data<int64_t>(), y.data<int64_t>(), m.outer, m.n,
                                      idx.numel(), m.inner);
          return std::vector<Tensor>{y};
        }
        BISSL_FLOAT_KERNEL(x.dtype(), "index_select",
                           kern::index_select<scalar_t>(x.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                       m.outer, m.n, idx.numel(), m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        return call_op("index_add", {g, c.input(1)},
                       {{"axis", c.attrs.i("axis")}, {"size", c.input_shape(0)[size_t(normalize_axis(
                                                                 c.attrs.i("axis"), int64_t(c.input_shape(0).size()),
                                                                 "index_select"))]}})[0];
      },
      [](const Tensor& t, const OpCtx& c) { return index_select(t, c.attrs.i("axis"), c.input(1)); }));

  r.add(linear_pair_op(
      "index_add", 2, "zeros with `size` along axis, g added at index (adjoint of index_select)",
      {"axis: int", "size: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &g = in[0], &idx = in[1];
        int64_t axis = normalize_axis(a.i("axis"), g.dim(), "index_add");
        Shape out = g.shape();
        out[size_t(axis)] = a.i("size");
        check_index(idx, a.i("size"), "index_add");
        Tensor y = out_zeros(out, g.dtype());
        Mid m = mid_of(out, axis);
        BISSL_FLOAT_KERNEL(g.dtype(), "index_add",
                           kern::index_add<scalar_t>(g.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                    m.outer, m.n, idx.numel(), m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return index_select(g, c.attrs.i("axis"), c.input(1)); },
      [](const Tensor& t, const OpCtx& c) { return call_op("index_add", {t, c.input(1)}, c.attrs)[0]; }));

  r.add(linear_pair_op(
      "gather", 2, "torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] along axis", {"axis: int"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &x = in[0], &idx = in[1];
        int64_t axis = normalize_axis(a.i("axis"), x.dim(), "gather");
        BISSL_CHECK(idx.dim() == x.dim(), "gather: index rank ", idx.dim(), " differs from input rank ", x.dim());
        for (int64_t d = 0; d < x.dim(); ++d)
          BISSL_CHECK(d == axis || idx.shape()[size_t(d)] == x.shape()[size_t(d)], "gather: index shape ",
                      shape_str(idx.shape()), " must match input ", shape_str(x.shape()), " outside axis ", axis);
        Mid m = mid_of(x.shape(), axis);
        check_index(idx, m.n, "gather");
        Tensor y = out_empty(idx.shape(), x.dtype());
        BISSL_FLOAT_KERNEL(x.dtype(), "gather",
                           kern::gather_mid<scalar_t>(x.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                     m.outer, m.n, idx.shape()[size_t(axis)], m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        return call_op("scatter_add", {g, c.input(1)}, {{"axis", c.attrs.i("axis")}, {"shape", c.input_shape(0)}})[0];
      },
      [](const Tensor& t, const OpCtx& c) { return gather(t, c.attrs.i("axis"), c.input(1)); }));

  r.add(linear_pair_op(
      "scatter_add", 2, "zeros of `shape` with g added at index along axis (adjoint of gather)",
      {"axis: int", "shape: ints"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &g = in[0], &idx = in[1];
        const Shape& out = a.ints("shape");
        int64_t axis = normalize_axis(a.i("axis"), int64_t(out.size()), "scatter_add");
        BISSL_CHECK(idx.shape() == g.shape(), "scatter_add: index shape ", shape_str(idx.shape()),
                    " differs from source ", shape_str(g.shape()));
        Mid m = mid_of(out, axis);
        check_index(idx, m.n, "scatter_add");
        Tensor y = out_zeros(out, g.dtype());
        BISSL_FLOAT_KERNEL(g.dtype(), "scatter_add",
                           kern::scatter_add_mid<scalar_t>(g.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                          m.outer, m.n, g.shape()[size_t(axis)], m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return gather(g, c.attrs.i("axis"), c.input(1)); },
      [](const Tensor& t, const OpCtx& c) { return call_op("scatter_add", {t, c.input(1)}, c.attrs)[0]; }));

  // Per-row index_select (MAE's token subsets): the index lives on the
  // tensor's device and is checked there, so no host read-back is needed.
  auto rows_of = [](const Shape& x, const Tensor& idx, int64_t axis, const char* op) {
    BISSL_CHECK(idx.dim() == axis + 1, op, ": expected an index of rank ", axis + 1, " (the dims up to axis ", axis,
                "), found shape ", shape_str(idx.shape()));
    for (int64_t d = 0; d < axis; ++d)
      BISSL_CHECK(idx.shape()[size_t(d)] == x[size_t(d)], op, ": index shape ", shape_str(idx.shape()),
                  " must match ", shape_str(x), " before axis ", axis);
    return mid_of(x, axis);
  };
  r.add(linear_pair_op(
      "gather_rows", 2,
      "per-row index_select: out[o, j, ...] = x[o, index[o, j], ...] with index [x.shape[:axis]..., K]",
      {"axis: int"},
      [rows_of](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &x = in[0], &idx = in[1];
        int64_t axis = normalize_axis(a.i("axis"), x.dim(), "gather_rows");
        Mid m = rows_of(x.shape(), idx, axis, "gather_rows");
        check_index(idx, m.n, "gather_rows");
        Shape out = x.shape();
        out[size_t(axis)] = idx.shape()[size_t(axis)];
        Tensor y = out_empty(out, x.dtype());
        BISSL_FLOAT_KERNEL(x.dtype(), "gather_rows",
                           kern::gather_rows<scalar_t>(x.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                      m.outer, m.n, out[size_t(axis)], m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        int64_t axis = normalize_axis(c.attrs.i("axis"), int64_t(c.input_shape(0).size()), "gather_rows");
        return call_op("scatter_rows_add", {g, c.input(1)},
                       {{"axis", axis}, {"size", c.input_shape(0)[size_t(axis)]}})[0];
      },
      [](const Tensor& t, const OpCtx& c) { return gather_rows(t, c.attrs.i("axis"), c.input(1)); }));

  r.add(linear_pair_op(
      "scatter_rows_add", 2, "zeros with `size` along axis, g[o, j, ...] added at row index[o, j] (adjoint of gather_rows)",
      {"axis: int", "size: int"},
      [rows_of](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &g = in[0], &idx = in[1];
        int64_t axis = normalize_axis(a.i("axis"), g.dim(), "scatter_rows_add");
        BISSL_CHECK(idx.dim() == axis + 1 && idx.shape()[size_t(axis)] == g.shape()[size_t(axis)],
                    "scatter_rows_add: index shape ", shape_str(idx.shape()), " does not match source ",
                    shape_str(g.shape()), " up to axis ", axis);
        BISSL_CHECK(a.i("size") >= 0, "scatter_rows_add: expected size >= 0, found ", a.i("size"));
        Shape out = g.shape();
        out[size_t(axis)] = a.i("size");
        Mid m = rows_of(out, idx, axis, "scatter_rows_add");
        check_index(idx, m.n, "scatter_rows_add");
        Tensor y = out_zeros(out, g.dtype());
        BISSL_FLOAT_KERNEL(g.dtype(), "scatter_rows_add",
                           kern::scatter_rows_add<scalar_t>(g.data<scalar_t>(), idx.data<int64_t>(),
                                                           y.data<scalar_t>(), m.outer, m.n,
                                                           g.shape()[size_t(axis)], m.inner));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return gather_rows(g, c.attrs.i("axis"), c.input(1)); },
      [](const Tensor& t, const OpCtx& c) { return call_op("scatter_rows_add", {t, c.input(1)}, c.attrs)[0]; }));

  r.add(linear_pair_op(
      "take", 2, "out[i] = x.flat[index[i]] (shape of index)", {},
      [](const std::vector<Tensor>& in, const Attrs&) {
        const Tensor &x = in[0], &idx = in[1];
        check_index(idx, x.numel(), "take");
        Tensor y = out_empty(idx.shape(), x.dtype());
        BISSL_FLOAT_KERNEL(x.dtype(), "take",
                           kern::take_flat<scalar_t>(x.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                    idx.numel(), x.numel()));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) {
        return call_op("put_add", {g, c.input(1)}, {{"shape", c.input_shape(0)}})[0];
      },
      [](const Tensor& t, const OpCtx& c) { return call_op("take", {t, c.input(1)})[0]; }));

  r.add(linear_pair_op(
      "put_add", 2, "zeros of `shape` with g[i] added at flat index[i] (adjoint of take)", {"shape: ints"},
      [](const std::vector<Tensor>& in, const Attrs& a) {
        const Tensor &g = in[0], &idx = in[1];
        BISSL_CHECK(idx.shape() == g.shape(), "put_add: index shape ", shape_str(idx.shape()), " differs from source ",
                    shape_str(g.shape()));
        Tensor y = out_zeros(a.ints("shape"), g.dtype());
        check_index(idx, y.numel(), "put_add");
        BISSL_FLOAT_KERNEL(g.dtype(), "put_add",
                           kern::scatter_add_flat<scalar_t>(g.data<scalar_t>(), idx.data<int64_t>(), y.data<scalar_t>(),
                                                           g.numel(), y.numel()));
        return std::vector<Tensor>{y};
      },
      [](const Tensor& g, const OpCtx& c) { return call_op("take", {g, c.input(1)})[0]; },
      [](const Tensor& t, const OpCtx& c) { return call_op("put_add", {t, c.input(1)}, c.attrs)[0]; }));
}

}  // namespace ops

namespace {
const OpDef& op_named(const char* n) { return OpRegistry::get().op(n); }
}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_named("reshape");
  if (x.shape() == shape) return x;
  return call_op(op, {x}, {{"shape", shape}})[0];
}
Tensor flatten(const Tensor& x, int64_t start_axis) {
  int64_t a = normalize_axis(start_axis, std::max<int64_t>(x.dim(), 1), "flatten");
  Shape s(x.shape().begin(), x.shape().begin() + std::min<int64_t>(a, x.dim()));
  s.push_back(-1);
  return reshape(x, s);
}
Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  static const OpDef& op = op_named("permute");
  return call_op(op, {x}, {{"perm", perm}})[0];
}
Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  std::vector<int64_t> perm(size_t(x.dim()));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[size_t(normalize_axis(a, x.dim(), "transpose"))], perm[size_t(normalize_axis(b, x.dim(), "transpose"))]);
  return permute(x, perm);
}
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  static const OpDef& op = op_named("slice");
  int64_t ax = normalize_axis(axis, x.dim(), "slice");
  int64_t n = x.shape()[size_t(ax)];
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  return call_op(op, {x}, {{"axis", ax}, {"start", start}, {"end", end}, {"step", step}})[0];
}
Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  static const OpDef& op = op_named("concat");
  return call_op(op, xs, {{"axis", axis}})[0];
}
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  static const OpDef& op = op_named("pad");
  return call_op(op, {x}, {{"pads", pads}, {"value", value}})[0];
}
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  static const OpDef& op = op_named("index_select");
  return call_op(op, {x, index}, {{"axis", axis}})[0];
}
Tensor gather_rows(const Tensor& x, int64_t axis, const Tensor& index) {
  static const OpDef& op = op_named("gather_rows");
  return call_op(op, {x, index}, {{"axis", axis}})[0];
}
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index) {
  static const OpDef& op = op_named("gather");
  return call_op(op, {x, index}, {{"axis", axis}})[0];
}
Tensor unsqueeze(const Tensor& x, int64_t axis) {
  int64_t a = normalize_axis(axis, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + a, 1);
  return reshape(x, s);
}
Tensor squeeze(const Tensor& x, int64_t axis) {
  int64_t a = normalize_axis(axis, x.dim(), "squeeze");
  BISSL_CHECK(x.shape()[size_t(a)] == 1, "squeeze: axis ", a, " has size ", x.shape()[size_t(a)], ", expected 1");
  Shape s = x.shape();
  s.erase(s.begin() + a);
  return reshape(x, s);
}

}  // namespace bissl
