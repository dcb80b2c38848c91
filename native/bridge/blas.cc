// Which BLAS MLX's CPU kernels call, for EMLX.blas_info/0 (see build/blas.rs
// for how the NIF puts it ahead of libmlx).
#include <dlfcn.h>

#include "bridge.h"

#include "emlx/native/src/ffi.rs.h"

#if defined(EMLX_BLAS_WHEEL)
extern "C" char* scipy_openblas_get_config(void);
extern "C" char* scipy_openblas_get_corename(void);
extern "C" int scipy_openblas_get_num_threads(void);
#define EMLX_OPENBLAS(f) scipy_openblas_##f
#elif defined(EMLX_BLAS_SYSTEM)
extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);
extern "C" int openblas_get_num_threads(void);
#define EMLX_OPENBLAS(f) openblas_##f
#endif

namespace emlx {

namespace {

std::string file_of(const void* address) {
  Dl_info info;
  if (address != nullptr && dladdr(address, &info) != 0 && info.dli_fname != nullptr) {
    return info.dli_fname;
  }
  return "";
}

// The library that defines `symbol` first in this NIF's own lookup order:
// after the process's global scope, the order libmlx's calls resolve in.
std::string first_definition(const char* symbol) {
  static const int anchor = 0;
  std::string self = file_of(&anchor);
  void* handle = self.empty() ? nullptr : dlopen(self.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return "";
  std::string file = file_of(dlsym(handle, symbol));
  dlclose(handle);
  return file;
}

}  // namespace

BlasInfo blas_info() {
  BlasInfo out;
  out.sgemm_from = rust::String(first_definition("cblas_sgemm"));
#if defined(EMLX_OPENBLAS)
  out.kind = rust::String(
#if defined(EMLX_BLAS_WHEEL)
      "openblas (scipy-openblas32 wheel)"
#else
      "openblas (system)"
#endif
  );
  out.library = rust::String(file_of(reinterpret_cast<const void*>(&EMLX_OPENBLAS(get_config))));
  out.config = rust::String(EMLX_OPENBLAS(get_config)());
  out.core = rust::String(EMLX_OPENBLAS(get_corename)());
  out.threads = EMLX_OPENBLAS(get_num_threads)();
#else
  out.kind = rust::String("reference BLAS bundled with MLX");
  out.threads = 1;
#endif
  return out;
}

}  // namespace emlx
