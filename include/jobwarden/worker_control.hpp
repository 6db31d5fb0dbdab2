#pragma once
// The scope of a signal (minimal; the controls header of the library replaces it).
#include <string_view>
namespace jobwarden {
enum class SignalScope { tree, leader };
constexpr std::string_view to_string(SignalScope scope) noexcept {
  return scope == SignalScope::leader ? "leader" : "tree";
}
}  // namespace jobwarden
