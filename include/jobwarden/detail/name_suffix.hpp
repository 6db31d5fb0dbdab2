#pragma once
/// \file
/// One test for the file names the job directory's readers and watchers look
/// for by their ending (`<id>.status.json`, `<nonce>.control`, ...).

#include <string_view>

namespace jobwarden::detail {

/// Whether `name` is something followed by `suffix`: it ends with `suffix`
/// and has at least one character before it (`.control` alone is no
/// request). An empty `suffix` matches nothing.
inline bool has_suffix(std::string_view name, std::string_view suffix) noexcept {
  return !suffix.empty() && name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// `name` without its `suffix` (which `has_suffix` said it has).
inline std::string_view without_suffix(std::string_view name, std::string_view suffix) noexcept {
  return name.substr(0, name.size() - suffix.size());
}

}  // namespace jobwarden::detail
