// The launch configurations of the CUDA kernels and the heuristic between the two strategies
// (host code only; the documentation is in kernels.h).
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

#include "cuda/kernels.h"

namespace fastgates::cuda {

namespace {

// Per step: 8 units × G gates × 8 lanes = 256 (LSTM) or 192 (GRU) threads, enough blocks to
// fill the device from H = 256 on, and each lane reads H/8 consecutive-in-lanes weights.
constexpr int kPerStepUnits = 8;
constexpr int kLanes = 8;
static_assert(4 * kPerStepUnits * kLanes <= kMaxPerStepThreads, "per-step blocks exceed their launch bounds");
// Persistent: at most this many gate rows per block (so at least 4 lanes per row).
constexpr int kMaxPersistentRows = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The compute type: float for the 16-bit types.
int acc_bytes(int dtype_bytes) { return dtype_bytes == 8 ? 8 : 4; }

size_t round_up(size_t bytes) { return (bytes + 15) / 16 * 16; }

size_t reduction_bytes(int gates, int units, int lanes, int dtype_bytes) {
  return size_t{kBatchTile} * gates * units * lanes * acc_bytes(dtype_bytes);
}

// The grid barrier, then the running state (kernels.h).
size_t workspace_for(int64_t batch, int64_t hidden, int dtype_bytes) {
  return kBarrierBytes + size_t(batch) * size_t(hidden) * acc_bytes(dtype_bytes);
}

void check_problem(int64_t batch, int64_t hidden, int gates, int dtype_bytes) {
  if (batch < 1 || hidden < 1) throw std::invalid_argument("batch and hidden_size must be at least 1");
  if (gates != 3 && gates != 4) throw std::invalid_argument("gates must be 3 (GRU) or 4 (LSTM)");
  if (dtype_bytes != 2 && dtype_bytes != 4 && dtype_bytes != 8) {
    throw std::invalid_argument("dtype_bytes must be 2, 4 or 8");
  }
  if (ceil_div(batch, kBatchTile) > 65535) throw std::invalid_argument("batch too large (more than 65535 batch tiles)");
  if (hidden > (int64_t{1} << 24)) throw std::invalid_argument("hidden_size too large");
}

std::optional<LaunchConfig> persistent_config(int64_t batch, int64_t hidden, int gates, int dtype_bytes,
                                              const DeviceProperties& device, std::string* why) {
  const int64_t tiles = ceil_div(batch, kBatchTile);
  const int64_t slices = device.sm_count / tiles;
  if (!device.cooperative_launch) {
    *why = "the device has no cooperative launch";
    return std::nullopt;
  }
  if (slices < 1) {
    *why = "more batch tiles than SMs";
    return std::nullopt;
  }
  const int units = static_cast<int>(ceil_div(hidden, slices));
  if (int64_t{gates} * units > kMaxPersistentRows) {
    *why = "too many hidden units per block (" + std::to_string(units) + ")";
    return std::nullopt;
  }
  const int lanes = std::min(kLanes, kMaxPersistentThreads / (gates * units));
  const size_t shared =
      round_up(size_t(gates) * units * hidden * dtype_bytes) + reduction_bytes(gates, units, lanes, dtype_bytes);
  if (shared > device.shared_bytes_per_block) {
    *why = "the weight slice needs " + std::to_string(shared) + " bytes of shared memory, the device has " +
           std::to_string(device.shared_bytes_per_block);
    return std::nullopt;
  }
  return LaunchConfig{Strategy::persistent, units, lanes, static_cast<int>(ceil_div(hidden, units)),
                      static_cast<int>(tiles), gates * units * lanes, shared,
                      workspace_for(batch, hidden, dtype_bytes)};
}

LaunchConfig per_step_config(int64_t batch, int64_t hidden, int gates, int dtype_bytes) {
  const int units = static_cast<int>(std::min<int64_t>(kPerStepUnits, hidden));
  return LaunchConfig{Strategy::per_step,
                      units,
                      kLanes,
                      static_cast<int>(ceil_div(hidden, units)),
                      static_cast<int>(ceil_div(batch, kBatchTile)),
                      gates * units * kLanes,
                      reduction_bytes(gates, units, kLanes, dtype_bytes),
                      workspace_for(batch, hidden, dtype_bytes)};
}

}  // namespace

LaunchConfig make_config(Strategy strategy, int64_t batch, int64_t hidden, int gates, int dtype_bytes,
                         const DeviceProperties& device) {
  check_problem(batch, hidden, gates, dtype_bytes);
  if (strategy == Strategy::per_step) return per_step_config(batch, hidden, gates, dtype_bytes);
  std::string why;
  std::optional<LaunchConfig> config = persistent_config(batch, hidden, gates, dtype_bytes, device, &why);
  if (!config) throw std::invalid_argument("the persistent strategy cannot run this problem: " + why);
  return *config;
}

LaunchConfig choose_strategy(int64_t batch, int64_t hidden, int gates, int dtype_bytes,
                             const DeviceProperties& device) {
  check_problem(batch, hidden, gates, dtype_bytes);
  std::string why;
  std::optional<LaunchConfig> config = persistent_config(batch, hidden, gates, dtype_bytes, device, &why);
  return config ? *config : per_step_config(batch, hidden, gates, dtype_bytes);
}

size_t schedule_table_offset(const LaunchConfig& config) { return round_up(config.workspace_bytes); }

size_t workspace_bytes(const LaunchConfig& config, int64_t steps, bool packed) {
  if (!packed) return config.workspace_bytes;
  return schedule_table_offset(config) + size_t(steps + 1) * sizeof(int64_t);
}

}  // namespace fastgates::cuda
