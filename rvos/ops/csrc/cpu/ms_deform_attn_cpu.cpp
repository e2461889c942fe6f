// CPU kernels: each (n, q, m) reads its L * P sampling points once and works on D contiguous
// channels at a time, so nothing of size (N, Lq, M, L, P, D) is ever materialised.
#include "ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <vector>

namespace rvos {
namespace {

// Returns <grad_out, row> and adds a * grad_out to grad_row: one pass over the channels.
template <typename scalar_t>
inline scalar_t dot_and_axpy(
    const scalar_t* grad_out, const scalar_t* row, scalar_t* grad_row, scalar_t a, int64_t n) {
  scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t d = 0; d < n; ++d) {
    acc += grad_out[d] * row[d];
    grad_row[d] += a * grad_out[d];
  }
  return acc;
}

template <typename scalar_t>
void forward_kernel(
    const Sizes& s,
    const scalar_t* value,
    const int64_t* shapes,
    const int64_t* starts,
    const scalar_t* locations,
    const scalar_t* weights,
    scalar_t* output) {
  const int64_t groups = s.groups();
  const int64_t samples = s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;  // from value[n, k, m] to value[n, k + 1, m]
  // Enough groups per task to amortise scheduling (a group is ~samples * 4 * D multiply-adds).
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, samples * s.channels));
  // Tasks walk (n, m, q) with q fastest: consecutive queries then read one head's maps,
  // value[n, :, m, :] (S * D values, which stay in cache), rather than all M heads' maps.
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    const std::vector<scalar_t> zeros(s.channels, scalar_t(0));  // for corners off the map
    for (int64_t t = begin; t < end; ++t) {
      const int64_t q = t % s.queries;
      const int64_t m = (t / s.queries) % s.heads;
      const int64_t n = t / (s.queries * s.heads);
      const int64_t g = (n * s.queries + q) * s.heads + m;
      const scalar_t* head_value = value + (n * s.keys * s.heads + m) * s.channels;
      const scalar_t* xy = locations + g * samples * 2;  // (L, P, 2)
      const scalar_t* attn = weights + g * samples;      // (L, P)
      scalar_t* out = output + g * s.channels;           // (D)
      for (int64_t l = 0; l < s.levels; ++l) {
        const int64_t height = shapes[2 * l];
        const int64_t width = shapes[2 * l + 1];
        const scalar_t* level_value = head_value + starts[l] * pixel_stride;
        for (int64_t p = 0; p < s.points; ++p) {
          const int64_t sample = l * s.points + p;
          BilinearCorners<scalar_t> c;
          if (!c.init(xy[2 * sample], xy[2 * sample + 1], height, width)) {
            continue;
          }
          const scalar_t* rows[4];
          scalar_t w[4];
          for (int k = 0; k < 4; ++k) {
            rows[k] = c.pixel[k] >= 0 ? level_value + c.pixel[k] * pixel_stride : zeros.data();
            w[k] = attn[sample] * c.weight[k];
          }
#pragma omp simd
          for (int64_t d = 0; d < s.channels; ++d) {
            out[d] += w[0] * rows[0][d] + w[1] * rows[1][d] + w[2] * rows[2][d] + w[3] * rows[3][d];
          }
        }
      }
    }
  });
}

// Parallel over (n, m): each task owns value[n, :, m, :], so grad_value accumulates without
// atomics or per-thread copies, and the result is deterministic. The gradients of locations
// and weights belong to a single group, hence to a single task, too.
template <typename scalar_t>
void backward_kernel(
    const Sizes& s,
    const scalar_t* value,
    const int64_t* shapes,
    const int64_t* starts,
    const scalar_t* locations,
    const scalar_t* weights,
    const scalar_t* grad_output,
    scalar_t* grad_value,
    scalar_t* grad_locations,
    scalar_t* grad_weights) {
  const int64_t samples = s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.heads;
      const int64_t m = task % s.heads;
      const int64_t head_offset = (n * s.keys * s.heads + m) * s.channels;
      for (int64_t q = 0; q < s.queries; ++q) {
        const int64_t g = (n * s.queries + q) * s.heads + m;
        const scalar_t* grad_out = grad_output + g * s.channels;
        const scalar_t* xy = locations + g * samples * 2;
        const scalar_t* attn = weights + g * samples;
        scalar_t* grad_xy = grad_locations + g * samples * 2;
        scalar_t* grad_attn = grad_weights + g * samples;
        for (int64_t l = 0; l < s.levels; ++l) {
          const int64_t height = shapes[2 * l];
          const int64_t width = shapes[2 * l + 1];
          const int64_t level_offset = head_offset + starts[l] * pixel_stride;
          for (int64_t p = 0; p < s.points; ++p) {
            const int64_t sample = l * s.points + p;
            BilinearCorners<scalar_t> c;
            const bool on_map = c.init(xy[2 * sample], xy[2 * sample + 1], height, width);
            scalar_t d_attn = 0, d_x = 0, d_y = 0;
            for (int k = 0; on_map && k < 4; ++k) {
              if (c.pixel[k] < 0) {
                continue;
              }
              const int64_t offset = level_offset + c.pixel[k] * pixel_stride;
              // <grad_out, corner value> drives all three gradients.
              const scalar_t corner = dot_and_axpy(grad_out, value + offset, grad_value + offset,
                                                   attn[sample] * c.weight[k], s.channels);
              d_attn += c.weight[k] * corner;
              d_x += c.dweight_dx[k] * corner;
              d_y += c.dweight_dy[k] * corner;
            }
            grad_attn[sample] = d_attn;
            // Chain rule through x = loc_x * W - 0.5 and y = loc_y * H - 0.5.
            grad_xy[2 * sample] = attn[sample] * d_x * static_cast<scalar_t>(width);
            grad_xy[2 * sample + 1] = attn[sample] * d_y * static_cast<scalar_t>(height);
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const Sizes s(value, sampling_locations);
  auto output = at::zeros({s.batch, s.queries, s.heads * s.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    forward_kernel<scalar_t>(
        s,
        value.const_data_ptr<scalar_t>(),
        spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(),
        sampling_locations.const_data_ptr<scalar_t>(),
        attention_weights.const_data_ptr<scalar_t>(),
        output.mutable_data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output) {
  const Sizes s(value, sampling_locations);
  auto grad_value = at::zeros_like(value);
  // The kernel writes every entry (zero for points off the map).
  auto grad_locations = at::empty_like(sampling_locations);
  auto grad_weights = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    backward_kernel<scalar_t>(
        s,
        value.const_data_ptr<scalar_t>(),
        spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(),
        sampling_locations.const_data_ptr<scalar_t>(),
        attention_weights.const_data_ptr<scalar_t>(),
        grad_output.const_data_ptr<scalar_t>(),
        grad_value.mutable_data_ptr<scalar_t>(),
        grad_locations.mutable_data_ptr<scalar_t>(),
        grad_weights.mutable_data_ptr<scalar_t>());
  });
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace rvos
