// Data into MLX: arrays from bytes, copied into a new buffer or, where
// MLX's allocator allows it, used in place.
//
// In place: MLX's CPU allocator (the no-GPU build of libmlx, as in the
// mlx-cpu wheel) keeps a buffer's size in the 8 bytes before its data, and
// allocator::Buffer::raw_ptr() is its pointer plus 8. An array whose Data is
// not owned by the allocator (allocator::Data(buffer, deleter)) is never
// donated to, freed or resized by MLX: MLX only reads it, and calls the
// deleter when the last array using it goes. So a Buffer made from `bytes -
// 8` gives an array over `bytes` as they are. MLX may read the 8 bytes before
// (Contiguous asks a buffer's size to decide whether to share it; either
// answer is correct), so those must be readable: inside a BEAM binary they
// are its header or the bytes of the binary it is a slice of. GPU
// allocators (Metal, CUDA) keep other objects in their buffers: there, and
// for MLX builds this build does not know (MLX_DIR), bytes are copied.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "bridge.h"

#include "emlx/native/src/ffi.rs.h"

namespace emlx {

namespace {

// MLX allocates arrays made from bytes in host memory (CUDA: managed
// memory), whatever the tensor's device.
const mx::Device host(mx::Device::cpu);

// The shape, checked against the byte count for `dtype`.
mx::Shape checked_shape(rust::Slice<const int64_t> shape_in, mx::Dtype dtype, size_t nbytes) {
  mx::Shape shape;
  size_t count = 1;
  for (auto d : shape_in) {
    if (d < 0 || d > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("from_blob: dimensions must be between 0 and 2^31-1");
    shape.push_back(static_cast<int32_t>(d));
    if (__builtin_mul_overflow(count, static_cast<size_t>(d), &count))
      throw std::invalid_argument("from_blob: shape has too many elements");
  }
  size_t expected;
  if (__builtin_mul_overflow(count, mx::size_of(dtype), &expected) || expected != nbytes) {
    std::ostringstream msg;
    msg << "from_blob: the binary has " << nbytes << " bytes but a tensor of " << count << " "
        << dtype_name(dtype) << " elements needs " << count * mx::size_of(dtype);
    throw std::invalid_argument(msg.str());
  }
  return shape;
}

// Fresh memory is faulted in page by page on its first write (4 KiB pages:
// 16k faults for 64 MiB, most of a copy's time). Transparent huge pages cut
// that 512-fold; where the system enables them on request, ask for them.
void prefer_huge_pages(void* data, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t page = 4096, huge = 2 << 20;
  auto start = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  auto end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(page - 1);
  if (end > start && end - start >= huge) {
    madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
  }
#endif
}

// From this size a copy is split between threads: one core's copy stops at
// about half of what the memory system gives two (measured: 64 MiB in 12 ms
// on one core of a 2-core VM, 8 ms on two). Below it, starting a thread
// costs more than it saves.
constexpr size_t PARALLEL_COPY_MIN = 16 << 20;
constexpr size_t PARALLEL_COPY_CHUNK = 8 << 20;
constexpr unsigned PARALLEL_COPY_MAX_THREADS = 4;

// memcpy, split into contiguous parts copied at once (this thread copies
// the first). A thread that cannot be started leaves its part to this one.
void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes < PARALLEL_COPY_MIN) {
    std::memcpy(dst, src, bytes);
    return;
  }
  // Read once: glibc reads /sys/devices/system/cpu/online on every call
  // (about 10 us, more than a small copy).
  static const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  size_t parts = std::min<size_t>({cores, PARALLEL_COPY_MAX_THREADS, bytes / PARALLEL_COPY_CHUNK});
  if (parts < 2) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  // Parts end on 4 KiB boundaries, so no two threads write one page.
  size_t part = ((bytes / parts) + 4095) & ~size_t{4095};
  std::vector<std::thread> helpers;
  std::vector<std::pair<size_t, size_t>> mine = {{0, std::min(part, bytes)}};
  for (size_t begin = part; begin < bytes; begin += part) {
    size_t len = std::min(part, bytes - begin);
    try {
      helpers.emplace_back([d, s, begin, len] { std::memcpy(d + begin, s + begin, len); });
    } catch (const std::system_error&) {
      mine.emplace_back(begin, len);
    }
  }
  for (auto [begin, len] : mine) std::memcpy(d + begin, s + begin, len);
  for (auto& t : helpers) t.join();
}

}  // namespace

mx::allocator::Data copy_to_new_buffer(const void* data, size_t bytes) {
  auto buffer = mx::allocator::malloc(bytes);
  void* dst = buffer.buffer().raw_ptr();
  if (bytes > 0 && dst == nullptr) {
    throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes");
  }
  if (bytes > 0) {
    prefer_huge_pages(dst, bytes);
    copy_bytes(dst, data, bytes);
  }
  return buffer;
}

std::unique_ptr<Array> from_bytes(rust::Slice<const uint8_t> bytes,
                                  rust::Slice<const int64_t> shape_in, rust::Str dtype_in) {
  auto dtype = parse_dtype(std::string(dtype_in));
  auto shape = checked_shape(shape_in, dtype, bytes.size());
  check_budget("from_blob", bytes.size(), shape, dtype, host);
  return std::make_unique<Array>(copy_to_new_buffer(bytes.data(), bytes.size()), std::move(shape),
                                 dtype);
}

void check_blob_shape(size_t nbytes, rust::Slice<const int64_t> shape, rust::Str dtype) {
  checked_shape(shape, parse_dtype(std::string(dtype)), nbytes);
}

bool zero_copy_available() {
#if defined(EMLX_MLX_CPU_ALLOCATOR)
  // The layout described above, checked against this libmlx.
  static const bool ok = [] {
    size_t probe[2] = {0, 0};
    mx::allocator::Buffer b(&probe[0]);
    return b.raw_ptr() == static_cast<void*>(&probe[1]);
  }();
  return ok;
#else
  return false;
#endif
}

std::unique_ptr<Array> from_kept_bytes(rust::Box<BinaryKeeper> keeper,
                                       rust::Slice<const int64_t> shape_in, rust::Str dtype_in) {
  auto dtype = parse_dtype(std::string(dtype_in));
  auto bytes = keeper->bytes();
  auto shape = checked_shape(shape_in, dtype, bytes.size());
  auto address = reinterpret_cast<uintptr_t>(bytes.data());
  // Element reads must be aligned to the element size.
  if (!zero_copy_available() || bytes.size() == 0 || address % mx::size_of(dtype) != 0) {
    check_budget("from_blob", bytes.size(), shape, dtype, host);
    return std::make_unique<Array>(copy_to_new_buffer(bytes.data(), bytes.size()),
                                   std::move(shape), dtype);
  }
  // std::function needs a copyable deleter: share the keeper.
  auto held = std::make_shared<rust::Box<BinaryKeeper>>(std::move(keeper));
  mx::allocator::Buffer buffer(const_cast<uint8_t*>(bytes.data()) - sizeof(size_t));
  mx::allocator::Data data(buffer, [held](mx::allocator::Buffer) mutable { held.reset(); });
  return std::make_unique<Array>(std::move(data), std::move(shape), dtype);
}

}  // namespace emlx
