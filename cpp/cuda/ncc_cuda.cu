// Batched NCC search and IoU on a CUDA device; see ncc_cuda.hpp for the contract.
//
// Layout of one batch: the host cuts every region and template out of its frame into one
// float32 staging buffer (uint8 pixels are exact in float32), with a SearchDesc per search and
// a TileDesc per 16 x 16 tile of score-map positions, so searches of any sizes, from any
// frames, share one launch of `score_tiles` (one block per tile) and one of `select_best` (one
// block per search).
#include "ncc_cuda.hpp"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace flickermine::cuda {
namespace {

constexpr int kTile = 16;             // score-map positions per block side in score_tiles
constexpr int kChunk = 32;            // template columns staged in shared memory per step
constexpr int kSelectThreads = 256;   // threads of a select_best block (8 warps)
constexpr int kIouTile = 16;

// Bound on the float32 error of a score, in units of FLT_EPSILON * sqrt(S_t * S_w') / denom:
// each product rounds once, T' and (v - shift) once each, and a chunk sums at most kChunk
// terms in float32 before it is added to a float64 accumulator (Higham's gamma_n bound).
constexpr double kBoundEpsilons = 2.0 * kChunk + 8.0;
// Absorbs rounding the bound itself and the float32 score/bound outputs.
constexpr double kBoundSlack = 1e-6;

void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    cudaGetLastError();  // clear a sticky-free error so the next call starts clean
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(error) + " (" +
                             cudaGetErrorString(error) + ")");
  }
}

struct SearchDesc {
  long long region_offset;    // first pixel of the region in the staging buffer
  long long template_offset;  // first pixel of the (raw) template
  long long map_offset;       // first score-map position of this search
  int region_w, region_h;
  int templ_w, templ_h;
  int map_w, map_h;
  float shift;        // the region's mean: subtracted before float32 products (smaller rounding)
  double templ_mean;  // mean of the template
  double templ_ss;    // sum of squared deviations of the template (float64)
};

struct TileDesc {
  int search, x0, y0;
};

struct SearchResult {
  double score;
  int x, y;  // top-left in the region
};

// One thread per score-map position of one 16 x 16 tile. The template is walked row by row in
// chunks of kChunk columns; each chunk of products is summed in float32 and added into float64.
template <bool kIntegerPixels>
__global__ void score_tiles(const float* __restrict__ pixels, const SearchDesc* __restrict__ searches,
                            const TileDesc* __restrict__ tiles, float* __restrict__ scores,
                            float* __restrict__ bounds) {
  __shared__ float image[kTile][kTile + kChunk];
  __shared__ float templ[kChunk];
  const TileDesc tile = tiles[blockIdx.x];
  const SearchDesc s = searches[tile.search];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTile + tx;
  const float* region = pixels + s.region_offset;
  const float* raw_templ = pixels + s.template_offset;
  const int n = s.templ_w * s.templ_h;

  double numerator = 0.0;
  long long int_sum = 0, int_sumsq = 0;  // exact window statistics of integer pixels
  double sum = 0.0, sumsq = 0.0;         // of (v - shift) for float pixels

  for (int row = 0; row < s.templ_h; ++row) {
    for (int c0 = 0; c0 < s.templ_w; c0 += kChunk) {
      const int width = min(kChunk, s.templ_w - c0);
      if (tid < kChunk) {
        templ[tid] = tid < width ? float(double(raw_templ[row * s.templ_w + c0 + tid]) - s.templ_mean) : 0.0f;
      }
      for (int i = tid; i < kTile * (kTile + kChunk); i += kTile * kTile) {
        const int r = i / (kTile + kChunk), c = i % (kTile + kChunk);
        const int gy = tile.y0 + r + row, gx = tile.x0 + c + c0;
        image[r][c] = (gy < s.region_h && gx < s.region_w) ? region[(long long)gy * s.region_w + gx] : 0.0f;
      }
      __syncthreads();
      float partial = 0.0f;
      if (kIntegerPixels) {
        int chunk_sum = 0, chunk_sumsq = 0;  // <= 32 * 255^2: fits
        for (int j = 0; j < width; ++j) {
          const float v = image[ty][tx + j];
          partial = fmaf(templ[j], v - s.shift, partial);
          const int iv = int(v);
          chunk_sum += iv;
          chunk_sumsq += iv * iv;
        }
        int_sum += chunk_sum;
        int_sumsq += chunk_sumsq;
      } else {
        for (int j = 0; j < width; ++j) {
          const float v = image[ty][tx + j];
          partial = fmaf(templ[j], v - s.shift, partial);
          const double d = double(v) - double(s.shift);
          sum += d;
          sumsq += d * d;
        }
      }
      numerator += partial;
      __syncthreads();
    }
  }

  const int px = tile.x0 + tx, py = tile.y0 + ty;
  if (px >= s.map_w || py >= s.map_h) return;  // only after the loop: all threads hit the barriers
  double window_ss, shifted_ss;  // sum (v - mean)^2 and sum (v - shift)^2 over the window
  if (kIntegerPixels) {
    // As the NumPy oracle: exact int64 (n * S2 - S1^2), then one division.
    window_ss = double(n * int_sumsq - int_sum * int_sum) / n;
    const double offset = double(int_sum) / n - double(s.shift);
    shifted_ss = window_ss + n * offset * offset;
  } else {
    window_ss = sumsq - sum * sum / n;
    shifted_ss = sumsq;
  }
  const double flat = n * double(kFlatVariance);
  float score = 0.0f, bound = 0.0f;  // flat template or window: exactly 0
  if (s.templ_ss > flat && window_ss > flat) {
    const double denom = sqrt(s.templ_ss * window_ss);
    const double value = fmin(1.0, fmax(-1.0, numerator / denom));
    score = float(value);
    bound = float(kBoundEpsilons * FLT_EPSILON * sqrt(s.templ_ss * fmax(shifted_ss, window_ss)) / denom + kBoundSlack);
  }
  const long long at = s.map_offset + (long long)py * s.map_w + px;
  scores[at] = score;
  bounds[at] = bound;
}

__device__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The float64 score of position (x, y) of search s, computed by one warp (lane 0 has it).
__device__ double exact_score(const float* pixels, const SearchDesc& s, int x, int y, int lane) {
  const float* region = pixels + s.region_offset;
  const float* raw_templ = pixels + s.template_offset;
  const int n = s.templ_w * s.templ_h;
  double numerator = 0.0, sum = 0.0, sumsq = 0.0;
  for (int p = lane; p < n; p += 32) {
    const int r = p / s.templ_w, c = p - r * s.templ_w;
    const double t = double(raw_templ[p]) - s.templ_mean;
    const double v = double(region[(long long)(y + r) * s.region_w + x + c]) - double(s.shift);
    numerator += t * v;
    sum += v;
    sumsq += v * v;
  }
  numerator = warp_sum(numerator);
  sum = warp_sum(sum);
  sumsq = warp_sum(sumsq);
  const double window_ss = sumsq - sum * sum / n;
  if (window_ss <= 0.0) return 0.0;
  return fmin(1.0, fmax(-1.0, numerator / sqrt(s.templ_ss * window_ss)));
}

// Better of two (score, index) pairs: higher score, then lower (row-major) index.
__device__ bool better(double score, int index, double best_score, int best_index) {
  return score > best_score || (score == best_score && index < best_index);
}

// One block per search: threshold = max lower bound; every position whose upper bound reaches
// it is a candidate; candidates are rescored in float64 (one warp each) and the first maximum
// in row-major order wins.
__global__ void select_best(const float* __restrict__ pixels, const SearchDesc* __restrict__ searches,
                            const float* __restrict__ scores, const float* __restrict__ bounds,
                            int* __restrict__ candidates, SearchResult* __restrict__ results) {
  __shared__ float lower_best[kSelectThreads];
  __shared__ int candidate_count;
  __shared__ double warp_score[kSelectThreads / 32];
  __shared__ int warp_index[kSelectThreads / 32];
  const SearchDesc s = searches[blockIdx.x];
  const int count = s.map_w * s.map_h;
  const float* score = scores + s.map_offset;
  const float* bound = bounds + s.map_offset;
  int* candidate = candidates + s.map_offset;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  float lower = -FLT_MAX;
  for (int i = tid; i < count; i += blockDim.x) lower = fmaxf(lower, score[i] - bound[i]);
  lower_best[tid] = lower;
  if (tid == 0) candidate_count = 0;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (tid < stride) lower_best[tid] = fmaxf(lower_best[tid], lower_best[tid + stride]);
    __syncthreads();
  }
  const float threshold = lower_best[0];
  for (int i = tid; i < count; i += blockDim.x) {
    if (score[i] + bound[i] >= threshold) candidate[atomicAdd(&candidate_count, 1)] = i;
  }
  __syncthreads();

  double best_score = -DBL_MAX;
  int best_index = INT_MAX;
  for (int c = warp; c < candidate_count; c += blockDim.x / 32) {
    const int i = candidate[c];
    double exact;
    if (bound[i] == 0.0f) {
      exact = score[i];  // flat: exactly 0, as computed
    } else {
      exact = exact_score(pixels, s, i % s.map_w, i / s.map_w, lane);
    }
    if (lane == 0 && better(exact, i, best_score, best_index)) {
      best_score = exact;
      best_index = i;
    }
  }
  if (lane == 0) {
    warp_score[warp] = best_score;
    warp_index[warp] = best_index;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < int(blockDim.x / 32); ++w) {
      if (better(warp_score[w], warp_index[w], best_score, best_index)) {
        best_score = warp_score[w];
        best_index = warp_index[w];
      }
    }
    results[blockIdx.x] = SearchResult{best_score, best_index % s.map_w, best_index / s.map_w};
  }
}

__global__ void iou_kernel(const double* __restrict__ a, int n, const double* __restrict__ b, int m,
                           double* __restrict__ out) {
  const int i = blockIdx.y * kIouTile + threadIdx.y, j = blockIdx.x * kIouTile + threadIdx.x;
  if (i >= n || j >= m) return;
  const double* p = a + 4 * i;
  const double* q = b + 4 * j;
  const double inter_w = fmax(fmin(p[2], q[2]) - fmax(p[0], q[0]), 0.0);
  const double inter_h = fmax(fmin(p[3], q[3]) - fmax(p[1], q[1]), 0.0);
  const double inter = inter_w * inter_h;
  const double uni = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter;
  out[(long long)i * m + j] = uni > 0.0 ? inter / uni : 0.0;
}

// Grow-only device and pinned host buffers, one set per host thread (calls come with the GIL
// released, possibly from several threads): no cudaMalloc on the hot path after warm-up.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t capacity = 0;
  T* reserve(std::size_t count) {
    if (count > capacity) {
      if (ptr != nullptr) cudaFree(ptr);
      ptr = nullptr;
      capacity = 0;
      const std::size_t want = count * 5 / 4 + 1;  // headroom: batches vary a little in size
      check(cudaMalloc(reinterpret_cast<void**>(&ptr), want * sizeof(T)), "cudaMalloc");
      capacity = want;
    }
    return ptr;
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);  // errors at process exit (runtime unloading) are harmless
  }
};

template <class T>
struct PinnedBuffer {
  T* ptr = nullptr;
  std::size_t capacity = 0;
  T* reserve(std::size_t count) {
    if (count > capacity) {
      if (ptr != nullptr) cudaFreeHost(ptr);
      ptr = nullptr;
      capacity = 0;
      const std::size_t want = count * 5 / 4 + 1;
      check(cudaMallocHost(reinterpret_cast<void**>(&ptr), want * sizeof(T)), "cudaMallocHost");
      capacity = want;
    }
    return ptr;
  }
  ~PinnedBuffer() {
    if (ptr != nullptr) cudaFreeHost(ptr);
  }
};

struct Context {
  cudaStream_t stream = nullptr;
  PinnedBuffer<float> host_pixels;
  DeviceBuffer<float> pixels;
  DeviceBuffer<SearchDesc> searches;
  DeviceBuffer<TileDesc> tiles;
  DeviceBuffer<float> scores, bounds;
  DeviceBuffer<int> candidates;
  DeviceBuffer<SearchResult> results;
  DeviceBuffer<double> boxes, iou;
  Context() { check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Context() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

Context& context() {
  thread_local Context ctx;
  return ctx;
}

double pixel(const ImageView& image, int y, int x) {
  const std::ptrdiff_t at = std::ptrdiff_t(y) * image.stride + x;
  return image.type == PixelType::kUint8 ? double(static_cast<const std::uint8_t*>(image.data)[at])
                                         : double(static_cast<const float*>(image.data)[at]);
}

// Copies box of image into out as float32 (row-major, box.width() per row).
void copy_box(const ImageView& image, const PixelBox& box, float* out) {
  for (int y = box.y1; y < box.y2; ++y) {
    const std::ptrdiff_t row = std::ptrdiff_t(y) * image.stride;
    if (image.type == PixelType::kUint8) {
      const std::uint8_t* src = static_cast<const std::uint8_t*>(image.data) + row;
      for (int x = box.x1; x < box.x2; ++x) *out++ = float(src[x]);
    } else {
      const float* src = static_cast<const float*>(image.data) + row;
      std::memcpy(out, src + box.x1, sizeof(float) * box.width());
      out += box.width();
    }
  }
}

bool inside(const PixelBox& box, const ImageView& image) {
  return box.x1 >= 0 && box.y1 >= 0 && box.x2 <= image.width && box.y2 <= image.height && box.x2 > box.x1 &&
         box.y2 > box.y1;
}

}  // namespace

DeviceStatus device_status() {
  DeviceStatus status;
  // The driver library: absent on a machine without an NVIDIA driver (a plain CPU box).
  if (void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
    status.driver_present = true;
    dlclose(driver);
  }
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();
    status.error_code = int(error);
    status.reason = std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
    status.no_device = !status.driver_present || error == cudaErrorNoDevice;
    return status;
  }
  status.device_count = count;
  if (count == 0) {
    status.reason = "the CUDA driver sees no device";
    return status;
  }
  status.no_device = false;
  cudaDeviceProp prop{};
  const cudaError_t prop_error = cudaGetDeviceProperties(&prop, 0);
  if (prop_error != cudaSuccess) {
    cudaGetLastError();
    status.error_code = int(prop_error);
    status.reason = std::string(cudaGetErrorName(prop_error)) + ": " + cudaGetErrorString(prop_error);
    return status;
  }
  status.device_name = prop.name;
  status.compute_capability = prop.major * 10 + prop.minor;
  status.usable = true;
  return status;
}

std::vector<NccMatch> ncc_search_batch(const std::vector<ImageView>& frames, const std::vector<SearchJob>& jobs) {
  if (jobs.empty()) return {};
  const PixelType type = frames.at(0).type;
  for (const ImageView& f : frames) {
    if (f.type != type) throw std::invalid_argument("all frames of a CUDA batch must have the same dtype");
  }
  // Host side: descriptors, float64 template statistics, staged pixels.
  std::vector<SearchDesc> descs(jobs.size());
  std::vector<TileDesc> tiles;
  std::size_t pixel_count = 0, map_count = 0;
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    const SearchJob& job = jobs[k];
    const ImageView& tf = frames.at(job.template_frame);
    const ImageView& sf = frames.at(job.search_frame);
    if (!inside(job.template_box, tf) || !inside(job.region, sf) || job.region.width() < job.template_box.width() ||
        job.region.height() < job.template_box.height()) {
      throw std::invalid_argument("search " + std::to_string(k) +
                                  ": template box or region is empty, outside its frame, or region smaller than template");
    }
    SearchDesc& d = descs[k];
    d.region_w = job.region.width();
    d.region_h = job.region.height();
    d.templ_w = job.template_box.width();
    d.templ_h = job.template_box.height();
    d.map_w = d.region_w - d.templ_w + 1;
    d.map_h = d.region_h - d.templ_h + 1;
    d.region_offset = (long long)pixel_count;
    pixel_count += std::size_t(d.region_w) * d.region_h;
    d.template_offset = (long long)pixel_count;
    pixel_count += std::size_t(d.templ_w) * d.templ_h;
    d.map_offset = (long long)map_count;
    map_count += std::size_t(d.map_w) * d.map_h;
    for (int y0 = 0; y0 < d.map_h; y0 += kTile)
      for (int x0 = 0; x0 < d.map_w; x0 += kTile) tiles.push_back(TileDesc{int(k), x0, y0});
  }
  Context& ctx = context();
  float* staged = ctx.host_pixels.reserve(pixel_count);
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    const SearchJob& job = jobs[k];
    SearchDesc& d = descs[k];
    const ImageView& tf = frames[job.template_frame];
    copy_box(frames[job.search_frame], job.region, staged + d.region_offset);
    copy_box(tf, job.template_box, staged + d.template_offset);
    double region_sum = 0.0;
    const float* r = staged + d.region_offset;
    for (long long i = 0, e = (long long)d.region_w * d.region_h; i < e; ++i) region_sum += r[i];
    d.shift = float(region_sum / (double(d.region_w) * d.region_h));
    const int n = d.templ_w * d.templ_h;
    double templ_sum = 0.0;
    for (int y = job.template_box.y1; y < job.template_box.y2; ++y)
      for (int x = job.template_box.x1; x < job.template_box.x2; ++x) templ_sum += pixel(tf, y, x);
    d.templ_mean = templ_sum / n;
    double ss = 0.0;
    for (int y = job.template_box.y1; y < job.template_box.y2; ++y)
      for (int x = job.template_box.x1; x < job.template_box.x2; ++x) {
        const double v = pixel(tf, y, x) - d.templ_mean;
        ss += v * v;
      }
    d.templ_ss = ss;
  }

  float* pixels = ctx.pixels.reserve(pixel_count);
  SearchDesc* searches = ctx.searches.reserve(descs.size());
  TileDesc* tile_descs = ctx.tiles.reserve(tiles.size());
  float* scores = ctx.scores.reserve(map_count);
  float* bounds = ctx.bounds.reserve(map_count);
  int* candidates = ctx.candidates.reserve(map_count);
  SearchResult* results = ctx.results.reserve(jobs.size());
  check(cudaMemcpyAsync(pixels, staged, pixel_count * sizeof(float), cudaMemcpyHostToDevice, ctx.stream), "copy pixels");
  check(cudaMemcpyAsync(searches, descs.data(), descs.size() * sizeof(SearchDesc), cudaMemcpyHostToDevice, ctx.stream),
        "copy searches");
  check(cudaMemcpyAsync(tile_descs, tiles.data(), tiles.size() * sizeof(TileDesc), cudaMemcpyHostToDevice, ctx.stream),
        "copy tiles");
  const dim3 block(kTile, kTile);
  if (type == PixelType::kUint8) {
    score_tiles<true><<<unsigned(tiles.size()), block, 0, ctx.stream>>>(pixels, searches, tile_descs, scores, bounds);
  } else {
    score_tiles<false><<<unsigned(tiles.size()), block, 0, ctx.stream>>>(pixels, searches, tile_descs, scores, bounds);
  }
  check(cudaGetLastError(), "score_tiles launch");
  select_best<<<unsigned(jobs.size()), kSelectThreads, 0, ctx.stream>>>(pixels, searches, scores, bounds, candidates,
                                                                       results);
  check(cudaGetLastError(), "select_best launch");
  std::vector<SearchResult> host_results(jobs.size());
  check(cudaMemcpyAsync(host_results.data(), results, jobs.size() * sizeof(SearchResult), cudaMemcpyDeviceToHost,
                        ctx.stream),
        "copy results");
  check(cudaStreamSynchronize(ctx.stream), "ncc kernels");

  std::vector<NccMatch> matches(jobs.size());
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    matches[k].score = host_results[k].score;
    matches[k].x = jobs[k].region.x1 + host_results[k].x;
    matches[k].y = jobs[k].region.y1 + host_results[k].y;
  }
  return matches;
}

std::vector<double> iou_matrix(const double* boxes_a, std::size_t n, const double* boxes_b, std::size_t m) {
  std::vector<double> out(n * m);
  if (out.empty()) return out;
  if (n > std::size_t(INT_MAX) || m > std::size_t(INT_MAX)) throw std::invalid_argument("too many boxes for iou");
  Context& ctx = context();
  double* boxes = ctx.boxes.reserve(4 * (n + m));
  double* result = ctx.iou.reserve(n * m);
  check(cudaMemcpyAsync(boxes, boxes_a, 4 * n * sizeof(double), cudaMemcpyHostToDevice, ctx.stream), "copy boxes_a");
  check(cudaMemcpyAsync(boxes + 4 * n, boxes_b, 4 * m * sizeof(double), cudaMemcpyHostToDevice, ctx.stream),
        "copy boxes_b");
  const dim3 block(kIouTile, kIouTile);
  const dim3 grid(unsigned((m + kIouTile - 1) / kIouTile), unsigned((n + kIouTile - 1) / kIouTile));
  iou_kernel<<<grid, block, 0, ctx.stream>>>(boxes, int(n), boxes + 4 * n, int(m), result);
  check(cudaGetLastError(), "iou launch");
  check(cudaMemcpyAsync(out.data(), result, n * m * sizeof(double), cudaMemcpyDeviceToHost, ctx.stream), "copy iou");
  check(cudaStreamSynchronize(ctx.stream), "iou kernel");
  return out;
}

}  // namespace flickermine::cuda
