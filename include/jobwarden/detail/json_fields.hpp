#pragma once
/// \file
/// Small helpers shared by the writers and readers of the job directory's JSON
/// files: parsing without exceptions, reading typed fields from hostile input
/// with one readable complaint instead of a throw, and writing optional values
/// as `null`. The hand-written JSON text (`append_json_string` and the like)
/// is in `json_text.hpp`, included here.

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/detail/time_format.hpp"

namespace jobwarden::detail {

/// Text from a file or a parser message made safe for JSON output: bytes that
/// are not printable ASCII become `\\xNN`, so `dump()` can never throw on
/// invalid UTF-8 that a hostile file smuggled into an error message.
inline std::string printable_text(std::string_view text, std::size_t limit = 512) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (char c : text.substr(0, limit)) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}


/// Serializes compactly. Invalid UTF-8 in strings (a file name in a worker's
/// message) is replaced by U+FFFD instead of throwing `type_error.316`.
inline std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// `null` for an empty optional, the value otherwise.
template <class T>
nlohmann::json json_or_null(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

/// `null` for an empty optional time, RFC 3339 text otherwise.
inline nlohmann::json time_or_null(const std::optional<std::chrono::system_clock::time_point>& time) {
  return time ? nlohmann::json(format_rfc3339(*time)) : nlohmann::json(nullptr);
}

/// Reads typed fields out of one JSON object; the first field of the wrong
/// type is remembered as `problem` ("`pid` is not an integer") and every later
/// read is skipped, so a parser reads all fields then checks `ok()` once.
/// Missing and `null` fields are "absent", never a problem.
class FieldReader {
 public:
  /// Reads from `object`; if it is not an object at all, that is the problem.
  explicit FieldReader(const nlohmann::json& object) : object_(object) {
    if (!object_.is_object()) problem_ = "not a JSON object";
  }

  /// Whether every field read so far had the right type.
  bool ok() const noexcept { return problem_.empty(); }
  /// What was wrong (empty when `ok()`).
  const std::string& problem() const noexcept { return problem_; }
  /// Records a problem found by the caller (a value out of range, an unknown name).
  void fail(std::string why) {
    if (problem_.empty()) problem_ = std::move(why);
  }

  /// The field, or `nullptr` when missing, `null`, or after a problem.
  const nlohmann::json* find(const char* key) const {
    if (!ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  /// A string field.
  std::optional<std::string> string(const char* key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) return wrong(key, "a string");
    return value->get<std::string>();
  }

  /// An integer field within `[min, max]`.
  std::optional<std::int64_t> integer(const char* key,
                                      std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                                      std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    std::int64_t number = 0;
    if (value->is_number_unsigned()) {
      const auto unsigned_number = value->get<std::uint64_t>();
      if (unsigned_number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return wrong(key, "an integer in range");
      }
      number = static_cast<std::int64_t>(unsigned_number);
    } else if (value->is_number_integer()) {
      number = value->get<std::int64_t>();
    } else {
      return wrong(key, "an integer");
    }
    if (number < min || number > max) return wrong(key, "an integer in range");
    return number;
  }

  /// An unsigned 64-bit integer field (process start times, sequence numbers).
  std::optional<std::uint64_t> unsigned_integer(const char* key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_number_unsigned()) return wrong(key, "a non-negative integer");
    return value->get<std::uint64_t>();
  }

  /// A boolean field.
  std::optional<bool> boolean(const char* key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_boolean()) return wrong(key, "true or false");
    return value->get<bool>();
  }

  /// A number field (integer or floating point).
  std::optional<double> number(const char* key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_number()) return wrong(key, "a number");
    return value->get<double>();
  }

  /// An RFC 3339 timestamp field.
  std::optional<std::chrono::system_clock::time_point> time(const char* key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) return wrong(key, "an RFC 3339 time");
    auto parsed = parse_rfc3339(value->get_ref<const std::string&>());
    if (!parsed) return wrong(key, "an RFC 3339 time");
    return parsed;
  }

  /// An object field.
  const nlohmann::json* object(const char* key) {
    const nlohmann::json* value = find(key);
    if (value != nullptr && !value->is_object()) {
      wrong(key, "an object");
      return nullptr;
    }
    return value;
  }

  /// The `schema_version` check every file starts with: present and `expected`.
  void require_schema_version(std::int64_t expected) {
    auto version = integer("schema_version");
    if (!ok()) return;
    if (!version) {
      fail("schema_version is missing");
    } else if (*version != expected) {
      fail("unsupported schema_version " + std::to_string(*version));
    }
  }

 private:
  std::nullopt_t wrong(const char* key, const char* expected) {
    fail(std::string(key) + " is not " + expected);
    return std::nullopt;
  }

  const nlohmann::json& object_;
  std::string problem_;
};

}  // namespace jobwarden::detail
