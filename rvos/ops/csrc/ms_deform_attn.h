// Multi-scale deformable attention with the semantics of Deformable-DETR's op.
//
//   value              (N, S, M, D)          S = sum over levels of H * W
//   spatial_shapes     (L, 2) int64          rows (H, W)
//   level_start_index  (L) int64             offset of each level in S
//   sampling_locations (N, Lq, M, L, P, 2)   (x, y) in [0, 1] of the level's map
//   attention_weights  (N, Lq, M, L, P)
//   output             (N, Lq, M * D)
//
// A location maps to the pixel coordinate x * W - 0.5 (pixel centres at integers, as
// grid_sample with align_corners=False); samples are bilinear, zero outside the map.
// The kernels assume inputs already validated by the op entry points (bindings.cpp):
// contiguous, on one device, one floating dtype, consistent shapes.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

#if defined(__CUDACC__)
#define RVOS_HOST_DEVICE __host__ __device__
#else
#define RVOS_HOST_DEVICE
#endif

namespace rvos {

// Sizes shared by the kernels. A "group" is one (n, q, m) triple, numbered g = (n * Lq + q) * M
// + m, the memory order of sampling_locations, attention_weights and output.
struct Sizes {
  int64_t batch, keys, heads, channels, queries, levels, points;  // N, S, M, D, Lq, L, P

  Sizes(const at::Tensor& value, const at::Tensor& sampling_locations)
      : batch(value.size(0)),
        keys(value.size(1)),
        heads(value.size(2)),
        channels(value.size(3)),
        queries(sampling_locations.size(1)),
        levels(sampling_locations.size(3)),
        points(sampling_locations.size(4)) {}

  RVOS_HOST_DEVICE int64_t groups() const { return batch * queries * heads; }
};

// The four bilinear neighbours of one sampling point, shared by the CPU and CUDA kernels
// so both follow one convention. acc_t is the accumulation type.
template <typename acc_t>
struct BilinearCorners {
  int64_t pixel[4];  // index within the level (y * W + x); -1 when outside the map
  acc_t weight[4];   // bilinear weight of each corner
  acc_t dweight_dx[4];
  acc_t dweight_dy[4];

  // Returns false when no corner lies inside the map (the sample is zero, as are its
  // gradients). The comparisons also reject NaN and far-away points.
  RVOS_HOST_DEVICE bool init(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width) {
    const acc_t x = loc_x * static_cast<acc_t>(width) - acc_t(0.5);
    const acc_t y = loc_y * static_cast<acc_t>(height) - acc_t(0.5);
    if (!(x >= acc_t(-1) && y >= acc_t(-1) && x < static_cast<acc_t>(width) &&
          y < static_cast<acc_t>(height))) {
      return false;
    }
    // floor() on [-1, W): truncation for x >= 0, and -1 below.
    const int64_t x0 = x < acc_t(0) ? -1 : static_cast<int64_t>(x);
    const int64_t y0 = y < acc_t(0) ? -1 : static_cast<int64_t>(y);
    const acc_t fx = x - static_cast<acc_t>(x0);
    const acc_t fy = y - static_cast<acc_t>(y0);
    const acc_t gx = acc_t(1) - fx;
    const acc_t gy = acc_t(1) - fy;
    // Corners in the order (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1).
    const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
    const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
    const acc_t w[4] = {gy * gx, gy * fx, fy * gx, fy * fx};
    const acc_t dx[4] = {-gy, gy, -fy, fy};
    const acc_t dy[4] = {-gx, -fx, gx, fx};
    for (int k = 0; k < 4; ++k) {
      const bool inside = xs[k] >= 0 && xs[k] < width && ys[k] >= 0 && ys[k] < height;
      pixel[k] = inside ? ys[k] * width + xs[k] : -1;
      weight[k] = w[k];
      dweight_dx[k] = dx[k];
      dweight_dy[k] = dy[k];
    }
    return true;
  }
};

at::Tensor ms_deform_attn_forward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output);

#ifdef WITH_CUDA
at::Tensor ms_deform_attn_forward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output);
#endif

}  // namespace rvos
