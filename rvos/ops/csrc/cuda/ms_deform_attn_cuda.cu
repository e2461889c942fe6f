// CUDA kernels: one warp per (n, q, m) group, its lanes striding over the D channels, so the
// reads of a corner value[n, k, m, :] are coalesced and the sums over channels needed by the
// location and weight gradients are warp shuffles. Arithmetic is in float32 for float16 and
// bfloat16 (at::opmath_type), and grad_value accumulates its atomics in float32 as well.
#include "ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

namespace rvos {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

template <typename scalar_t>
__global__ void forward_kernel(
    const Sizes s,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const scalar_t* __restrict__ locations,
    const scalar_t* __restrict__ weights,
    scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (g >= s.groups()) {
    return;
  }
  const int64_t m = g % s.heads;
  const int64_t n = g / (s.queries * s.heads);
  const int64_t samples = s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;
  const scalar_t* head_value = value + (n * s.keys * s.heads + m) * s.channels;
  const scalar_t* xy = locations + g * samples * 2;
  const scalar_t* attn = weights + g * samples;
  for (int64_t d = threadIdx.x; d < s.channels; d += kWarp) {
    acc_t acc = 0;
    for (int64_t l = 0; l < s.levels; ++l) {
      const int64_t height = shapes[2 * l];
      const int64_t width = shapes[2 * l + 1];
      const scalar_t* level_value = head_value + starts[l] * pixel_stride + d;
      for (int64_t p = 0; p < s.points; ++p) {
        const int64_t sample = l * s.points + p;
        BilinearCorners<acc_t> c;
        if (!c.init(static_cast<acc_t>(xy[2 * sample]), static_cast<acc_t>(xy[2 * sample + 1]),
                    height, width)) {
          continue;
        }
        const acc_t a = static_cast<acc_t>(attn[sample]);
        for (int k = 0; k < 4; ++k) {
          if (c.pixel[k] >= 0) {
            acc += a * c.weight[k] * static_cast<acc_t>(level_value[c.pixel[k] * pixel_stride]);
          }
        }
      }
    }
    output[g * s.channels + d] = static_cast<scalar_t>(acc);
  }
}

// The whole warp handles one group, so `g` and every branch on a sample are warp-uniform and
// all lanes reach the shuffles.
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(
    const Sizes s,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const scalar_t* __restrict__ locations,
    const scalar_t* __restrict__ weights,
    const scalar_t* __restrict__ grad_output,
    acc_t* __restrict__ grad_value,
    scalar_t* __restrict__ grad_locations,
    scalar_t* __restrict__ grad_weights) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (g >= s.groups()) {
    return;
  }
  const int lane = threadIdx.x;
  const int64_t m = g % s.heads;
  const int64_t n = g / (s.queries * s.heads);
  const int64_t samples = s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;
  const int64_t head_offset = (n * s.keys * s.heads + m) * s.channels;
  const scalar_t* grad_out = grad_output + g * s.channels;
  const scalar_t* xy = locations + g * samples * 2;
  const scalar_t* attn = weights + g * samples;
  for (int64_t l = 0; l < s.levels; ++l) {
    const int64_t height = shapes[2 * l];
    const int64_t width = shapes[2 * l + 1];
    const int64_t level_offset = head_offset + starts[l] * pixel_stride;
    for (int64_t p = 0; p < s.points; ++p) {
      const int64_t sample = l * s.points + p;
      BilinearCorners<acc_t> c;
      const bool on_map = c.init(static_cast<acc_t>(xy[2 * sample]),
                                 static_cast<acc_t>(xy[2 * sample + 1]), height, width);
      const acc_t a = static_cast<acc_t>(attn[sample]);
      acc_t d_attn = 0, d_x = 0, d_y = 0;
      for (int64_t d = lane; on_map && d < s.channels; d += kWarp) {
        const acc_t go = static_cast<acc_t>(grad_out[d]);
        for (int k = 0; k < 4; ++k) {
          if (c.pixel[k] < 0) {
            continue;
          }
          const int64_t offset = level_offset + c.pixel[k] * pixel_stride + d;
          const acc_t corner = go * static_cast<acc_t>(value[offset]);
          d_attn += c.weight[k] * corner;
          d_x += c.dweight_dx[k] * corner;
          d_y += c.dweight_dy[k] * corner;
          atomicAdd(grad_value + offset, a * c.weight[k] * go);
        }
      }
      d_attn = warp_sum(d_attn);
      d_x = warp_sum(d_x);
      d_y = warp_sum(d_y);
      if (lane == 0) {
        grad_weights[g * samples + sample] = static_cast<scalar_t>(d_attn);
        // Chain rule through x = loc_x * W - 0.5 and y = loc_y * H - 0.5.
        grad_locations[(g * samples + sample) * 2] =
            static_cast<scalar_t>(a * d_x * static_cast<acc_t>(width));
        grad_locations[(g * samples + sample) * 2 + 1] =
            static_cast<scalar_t>(a * d_y * static_cast<acc_t>(height));
      }
    }
  }
}

dim3 grid_for(const Sizes& s) {
  const int64_t blocks = (s.groups() + kWarpsPerBlock - 1) / kWarpsPerBlock;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
              "ms_deform_attn: too many (batch, query, head) groups for one launch: ",
              s.groups());
  return dim3(static_cast<unsigned int>(blocks));
}

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s(value, sampling_locations);
  auto output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        forward_kernel<scalar_t><<<grid_for(s), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
            s,
            value.const_data_ptr<scalar_t>(),
            spatial_shapes.const_data_ptr<int64_t>(),
            level_start_index.const_data_ptr<int64_t>(),
            sampling_locations.const_data_ptr<scalar_t>(),
            attention_weights.const_data_ptr<scalar_t>(),
            output.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s(value, sampling_locations);
  auto grad_value =
      at::zeros(value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  // The kernel writes every entry (zero for points off the map).
  auto grad_locations = at::empty_like(sampling_locations);
  auto grad_weights = at::empty_like(attention_weights);
  if (s.groups() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          backward_kernel<scalar_t, acc_t>
              <<<grid_for(s), dim3(kWarp, kWarpsPerBlock), 0, stream>>>(
                  s,
                  value.const_data_ptr<scalar_t>(),
                  spatial_shapes.const_data_ptr<int64_t>(),
                  level_start_index.const_data_ptr<int64_t>(),
                  sampling_locations.const_data_ptr<scalar_t>(),
                  attention_weights.const_data_ptr<scalar_t>(),
                  grad_output.const_data_ptr<scalar_t>(),
                  grad_value.mutable_data_ptr<acc_t>(),
                  grad_locations.mutable_data_ptr<scalar_t>(),
                  grad_weights.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace rvos
