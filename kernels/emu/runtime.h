// The harness's launch interface, shared by the scheduler (runtime.cpp), the per-family
// translation units and the kernel registry that build.rs generates.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace simattr_emu {

// Calls one kernel as one CUDA thread, its arguments read as cuLaunchKernel reads them: one
// pointer per parameter, to a value of the parameter's type.
using Invoke = void (*)(void* const* args);

// Runs `invoke` for every thread of every block of the grid; returns when all have finished.
void launch(Invoke invoke, void* const* args, const unsigned grid[3], const unsigned block[3]);

template <typename Signature>
struct Parameters;

template <typename... Args>
struct Parameters<void (*)(Args...)> {
  static constexpr std::size_t count = sizeof...(Args);

  template <auto Kernel, std::size_t... I>
  static void call(void* const* args, std::index_sequence<I...>) {
    Kernel(*static_cast<const std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
  }
};

// `invoke_kernel<K>` is an Invoke for kernel K; `parameter_count<K>` its number of parameters.
template <auto Kernel>
void invoke_kernel(void* const* args) {
  using P = Parameters<decltype(Kernel)>;
  P::template call<Kernel>(args, std::make_index_sequence<P::count>{});
}

template <auto Kernel>
constexpr std::size_t parameter_count = Parameters<decltype(Kernel)>::count;

// One kernel of a family's translation unit, as the registry lists it.
struct Entry {
  const char* name;
  Invoke invoke;
  std::size_t parameters;
};

}  // namespace simattr_emu
