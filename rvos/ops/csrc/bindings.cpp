// The extension module rvos.ops._C: importing it registers torch.ops.rvos.ms_deform_attn_*
// with the dispatcher (a CPU kernel always, a CUDA kernel when built WITH_CUDA). Every entry
// point validates its inputs here, once, before any kernel runs.
#include <Python.h>
#include <torch/library.h>

#include <array>
#include <utility>

#include "ms_deform_attn.h"

namespace rvos {
namespace {

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& value) {
  TORCH_CHECK(t.device() == value.device(), "ms_deform_attn: ", name, " is on ", t.device(),
              " but value is on ", value.device());
  TORCH_CHECK(t.is_contiguous(), "ms_deform_attn: ", name, " must be contiguous");
}

void check_inputs(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (N, S, M, D), got ",
              value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be (L, 2), got ", spatial_shapes.sizes());
  const int64_t levels = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == levels,
              "ms_deform_attn: level_start_index must be (L,) with L = ", levels, ", got ",
              level_start_index.sizes());
  const int64_t n = value.size(0), m = value.size(2);
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == n &&
                  sampling_locations.size(2) == m && sampling_locations.size(3) == levels &&
                  sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be (N, Lq, M, L, P, 2) = (", n, ", Lq, ",
              m, ", ", levels, ", P, 2), got ", sampling_locations.sizes());
  const auto sizes = sampling_locations.sizes();
  TORCH_CHECK(attention_weights.sizes() == sizes.slice(0, 5),
              "ms_deform_attn: attention_weights must be (N, Lq, M, L, P) = ", sizes.slice(0, 5),
              ", got ", attention_weights.sizes());

  for (const auto& [t, name] : {std::pair{&value, "value"},
                                {&spatial_shapes, "spatial_shapes"},
                                {&level_start_index, "level_start_index"},
                                {&sampling_locations, "sampling_locations"},
                                {&attention_weights, "attention_weights"}}) {
    check_tensor(*t, name, value);
  }
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64, got ",
              spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share one "
              "dtype, got ", value.scalar_type(), ", ", sampling_locations.scalar_type(), " and ",
              attention_weights.scalar_type());

  // The kernels index value with these numbers: an inconsistent table would read out of
  // bounds, so it is checked on the host (a small copy, and a sync, for CUDA inputs).
  const auto shapes = spatial_shapes.to(at::kCPU);
  const auto starts = level_start_index.to(at::kCPU);
  const int64_t* hw = shapes.const_data_ptr<int64_t>();
  const int64_t* start = starts.const_data_ptr<int64_t>();
  int64_t expected_start = 0;
  for (int64_t l = 0; l < levels; ++l) {
    TORCH_CHECK(hw[2 * l] > 0 && hw[2 * l + 1] > 0, "ms_deform_attn: level ", l,
                " has an empty map ", hw[2 * l], "x", hw[2 * l + 1]);
    TORCH_CHECK(start[l] == expected_start, "ms_deform_attn: level_start_index[", l, "] is ",
                start[l], " but the levels before it hold ", expected_start, " pixels");
    expected_start += hw[2 * l] * hw[2 * l + 1];
  }
  TORCH_CHECK(expected_start == value.size(1), "ms_deform_attn: spatial_shapes hold ",
              expected_start, " pixels but value has S = ", value.size(1));
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& value,
                       const at::Tensor& sampling_locations) {
  const std::array<int64_t, 3> expected{value.size(0), sampling_locations.size(1),
                                        value.size(2) * value.size(3)};
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected),
              "ms_deform_attn: grad_output must be (N, Lq, M * D) = ", at::IntArrayRef(expected),
              ", got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(),
              "ms_deform_attn: grad_output must have the dtype of value, ", value.scalar_type(),
              ", got ", grad_output.scalar_type());
  check_tensor(grad_output, "grad_output", value);
}

void check_cpu_dtype(const at::Tensor& value) {
  TORCH_CHECK(value.scalar_type() == at::kFloat || value.scalar_type() == at::kDouble,
              "ms_deform_attn: the CPU kernels support float32 and float64, got ",
              value.scalar_type());
}

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_cpu_dtype(value);
  return ms_deform_attn_forward_cpu(value, spatial_shapes, level_start_index,
                                    sampling_locations, attention_weights);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_cpu_dtype(value);
  check_grad_output(grad_output, value, sampling_locations);
  return ms_deform_attn_backward_cpu(value, spatial_shapes, level_start_index,
                                     sampling_locations, attention_weights, grad_output);
}

#ifdef WITH_CUDA
void check_cuda_dtype(const at::Tensor& value) {
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "ms_deform_attn: the CUDA kernels support float32, float64, float16 and "
              "bfloat16, got ", dtype);
}

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations,
                        const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_cuda_dtype(value);
  return ms_deform_attn_forward_cuda(value, spatial_shapes, level_start_index,
                                     sampling_locations, attention_weights);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_cuda_dtype(value);
  check_grad_output(grad_output, value, sampling_locations);
  return ms_deform_attn_backward_cuda(value, spatial_shapes, level_start_index,
                                      sampling_locations, attention_weights, grad_output);
}
#endif

}  // namespace
}  // namespace rvos

TORCH_LIBRARY(rvos, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rvos, CPU, m) {
  m.impl("ms_deform_attn_forward", &rvos::forward_cpu);
  m.impl("ms_deform_attn_backward", &rvos::backward_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(rvos, CUDA, m) {
  m.impl("ms_deform_attn_forward", &rvos::forward_cuda);
  m.impl("ms_deform_attn_backward", &rvos::backward_cuda);
}
#endif

// A plain module (no pybind11): the ops live in torch.ops.rvos; `with_cuda` tells Python
// whether CUDA kernels were compiled in.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "rvos compiled ops (registered as torch.ops.rvos.*)", -1,
      nullptr};
  PyObject* module = PyModule_Create(&module_def);
#ifdef WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (module != nullptr && PyModule_AddIntConstant(module, "with_cuda", with_cuda) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
