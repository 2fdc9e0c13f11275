// The counter-based random bits shared by the masks (masks.cpp) and the Gaussian noise
// (noise.cpp): element i's 32 bits are a pure function of (seed, i), so a tensor is filled by
// vectorized loops split across threads in any way, with the same result for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compiler.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// A low-bias 32-bit integer hash (xorshift-multiply, bijective). One round mixes well; two keyed
// rounds make streams for different seeds unrelated.
RR_INLINE uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

struct Key {
  uint32_t k0, k1;
};

// splitmix64's finalizer: seeds that differ in a few bits still get unrelated keys.
inline Key make_key(int64_t seed) {
  uint64_t z = static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return {static_cast<uint32_t>(z), static_cast<uint32_t>(z >> 32)};
}

// The vector loops run on 32-bit lanes, so the high half of a 64-bit index goes into the key
// (constant over each 2^32-element segment; zero for every realistic mask).
RR_INLINE uint32_t segment_key(const Key& key, int64_t i) {
  return key.k1 + static_cast<uint32_t>(static_cast<uint64_t>(i) >> 32) * 0x9E3779B9U;
}

RR_INLINE uint32_t bits(uint32_t lo, uint32_t k0, uint32_t k1) { return mix32(mix32(lo ^ k0) ^ k1); }

// End of the segment (constant high index half) that starts at s, clipped to e.
RR_INLINE int64_t segment_end(int64_t s, int64_t e) {
  return std::min<int64_t>(e, ((s >> 32) + 1) << 32);
}

}  // namespace
}  // namespace rnnreg_fast
