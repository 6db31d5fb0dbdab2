#pragma once
/// \file
/// Job and worker ids: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` (docs/contract.md). Ids become
/// directory names, so anything else (`..`, `/`, empty, too long, NUL) is
/// rejected before anything touches the disk.

#include <string>
#include <string_view>
#include <system_error>

#include "jobwarden/errors.hpp"

namespace jobwarden {

/// Longest accepted id.
inline constexpr std::size_t max_id_length = 128;

/// Whether `id` is a valid job or worker id.
inline bool is_valid_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > max_id_length) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) return false;
  for (char c : id) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

namespace detail {
/// A printable rendering of a possibly hostile id for error messages.
inline std::string quote_id(std::string_view id) {
  std::string out = "\"";
  for (char c : id.substr(0, 160)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '"' || c == '\\') {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  if (id.size() > 160) out += "...";
  return out + "\"";
}
}  // namespace detail

/// Checks `id`; on failure sets `ec` to `errc::invalid_id`. `what` names the
/// kind of id ("job id", "worker id") in the thrown message.
inline void validate_id(std::string_view id, std::string_view /*what*/, std::error_code& ec) {
  ec = is_valid_id(id) ? std::error_code{} : make_error_code(errc::invalid_id);
}

/// Throwing form: `std::system_error` saying which id is wrong and why.
inline void validate_id(std::string_view id, std::string_view what) {
  if (is_valid_id(id)) return;
  std::string why = id.empty() ? "it is empty"
                    : id.size() > max_id_length
                        ? "it is longer than 128 characters"
                        : "it must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}";
  detail::throw_error(make_error_code(errc::invalid_id),
                      std::string("invalid ") + std::string(what) + " " + detail::quote_id(id) +
                          ": " + why);
}

}  // namespace jobwarden
