#pragma once
/// \file
/// JSON text written and checked by hand, without a JSON library: string
/// escaping, integers, seconds, and a well-formedness check. The records
/// written often (journal lines, a worker's `<id>.status.json`) are built with
/// these, as nlohmann's compact `dump()` (see `dump_json` in `json_fields.hpp`)
/// would write the same values: strings and integers byte for byte, seconds
/// as the shortest text that reads back as the same double (where nlohmann's
/// Grisu2 is not always shortest: 649 µs is "0.000649" here and
/// "0.0006489999999999999" there). The tests compare both.
/// Cheap to include: only the standard library.

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace jobwarden::detail {

/// The length of the well-formed UTF-8 sequence at `text[at]` (1 to 4), or 0
/// when the bytes there are not one (no overlong forms, no surrogates,
/// nothing above U+10FFFF). When they are not, `valid_prefix` says how many of
/// them began a sequence before a byte broke it (0: the first byte is not a
/// lead byte), so a decoder can resume at the breaking byte.
inline std::size_t utf8_sequence_length(std::string_view text, std::size_t at, std::size_t& valid_prefix) {
  valid_prefix = 0;
  const auto c = static_cast<unsigned char>(text[at]);
  if (c < 0x80) return 1;
  std::size_t length;
  unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    length = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    length = 3;
    if (c == 0xE0) low = 0xA0;
    if (c == 0xED) high = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    length = 4;
    if (c == 0xF0) low = 0x90;
    if (c == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k < length; ++k) {
    valid_prefix = k;
    if (at + k >= text.size()) return 0;  // cut short by the end of the text
    const auto next = static_cast<unsigned char>(text[at + k]);
    if (k == 1 ? (next < low || next > high) : (next < 0x80 || next > 0xBF)) return 0;
  }
  valid_prefix = 0;
  return length;
}

/// Whether `text` is well-formed UTF-8 (no overlong forms, no surrogates,
/// nothing above U+10FFFF).
inline bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0, ignored = 0;
  while (i < text.size()) {
    const std::size_t length = utf8_sequence_length(text, i, ignored);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

/// Appends `text` as a JSON string, quotes included, as nlohmann's compact
/// `dump` writes it with invalid UTF-8 replaced: `"` `\\` and control
/// characters escaped (`\n`, `\u001f`), other characters kept as UTF-8, and
/// each invalid sequence replaced by U+FFFD exactly where nlohmann puts one
/// (a broken sequence becomes one U+FFFD and the byte that broke it is read
/// again; a sequence cut short by the end becomes one).
inline void append_json_string(std::string& out, std::string_view text) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      std::size_t prefix = 0;
      const std::size_t length = utf8_sequence_length(text, i, prefix);
      if (length == 0) {
        out += "\xEF\xBF\xBD";
        i += prefix == 0 ? 1 : prefix;
        continue;
      }
      out.append(text.data() + i, length);
      i += length;
      continue;
    }
    ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

/// Appends an integer in decimal.
template <class Integer>
void append_integer(std::string& out, Integer value) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, static_cast<std::size_t>(result.ptr - digits));
}

/// Appends a duration in seconds as the double `duration<double>(value).count()`:
/// the shortest digits that read back as that double (the same double
/// nlohmann's `dump` writes, not always the same digits, see above), so to the microsecond — "0.000682", "12.5", "3.0"
/// — and, below 100 µs, in exponent form ("6.8e-05", "1e-06").
inline void append_seconds(std::string& out, std::chrono::microseconds value) {
  long long micros = value.count();
  if (micros < 0) {
    out += '-';
    micros = -micros;  // a duration never reaches LLONG_MIN
  }
  if (micros > 0 && micros < 100) {
    // d[.d]e-0X: the digits of `micros` with their trailing zeros dropped.
    char digits[2];
    int count = 0;
    int exponent = -6;
    if (micros >= 10) {
      digits[count++] = static_cast<char>('0' + micros / 10);
      if (micros % 10 != 0) digits[count++] = static_cast<char>('0' + micros % 10);
      exponent = -5;
    } else {
      digits[count++] = static_cast<char>('0' + micros);
    }
    out += digits[0];
    if (count == 2) {
      out += '.';
      out += digits[1];
    }
    out += exponent == -5 ? "e-05" : "e-06";
    return;
  }
  append_integer(out, micros / 1000000);
  char fraction[6];
  long long rest = micros % 1000000;
  for (int i = 5; i >= 0; --i) {
    fraction[i] = static_cast<char>('0' + rest % 10);
    rest /= 10;
  }
  int digits = 6;
  while (digits > 1 && fraction[digits - 1] == '0') --digits;
  out += '.';
  out.append(fraction, static_cast<std::size_t>(digits));
}

/// Why `text` is not one well-formed JSON value, as nlohmann's parser would
/// judge it (an empty string when it is one): surrounding whitespace allowed,
/// strings in valid UTF-8 with valid escapes (surrogate pairs matched),
/// numbers finite as doubles. Nesting is checked without recursion, so deep
/// input cannot exhaust the stack.
inline std::string json_text_problem(std::string_view text) {
  std::size_t at = 0;
  const std::size_t n = text.size();
  std::string open;  // '{' and '[' still open, innermost last
  auto skip_space = [&] {
    while (at < n && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
  };
  auto where = [&](const char* what) { return std::string(what) + " at offset " + std::to_string(at); };
  auto hex4 = [&](unsigned& value) {
    if (n - at < 4) return false;
    value = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = text[at++];
      value <<= 4;
      if (h >= '0' && h <= '9') value |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') value |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') value |= static_cast<unsigned>(h - 'A' + 10);
      else return false;
    }
    return true;
  };
  // A string starting at the opening quote; false (and `at` at the fault) when broken.
  auto string = [&]() -> const char* {
    ++at;
    while (at < n) {
      const auto c = static_cast<unsigned char>(text[at]);
      if (c == '"') {
        ++at;
        return nullptr;
      }
      if (c < 0x20) return "control character in a string";
      if (c == '\\') {
        ++at;
        if (at >= n) return "unterminated string";
        const char e = text[at++];
        if (e == 'u') {
          unsigned unit = 0;
          if (!hex4(unit)) return "invalid \\u escape";
          if (unit >= 0xDC00 && unit <= 0xDFFF) return "unpaired surrogate";
          if (unit >= 0xD800 && unit <= 0xDBFF) {
            unsigned low = 0;
            if (n - at < 2 || text[at] != '\\' || text[at + 1] != 'u') return "unpaired surrogate";
            at += 2;
            if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return "unpaired surrogate";
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          return "invalid escape";
        }
        continue;
      }
      if (c < 0x80) {
        ++at;
        continue;
      }
      std::size_t ignored = 0;
      const std::size_t length = utf8_sequence_length(text, at, ignored);
      if (length == 0) return "invalid UTF-8 in a string";
      at += length;
    }
    return "unterminated string";
  };
  auto number = [&]() -> const char* {
    const std::size_t start = at;
    if (text[at] == '-') ++at;
    if (at >= n || text[at] < '0' || text[at] > '9') return "invalid number";
    std::size_t integer_digits = 0;
    if (text[at] == '0') {
      ++at;
    } else {
      while (at < n && text[at] >= '0' && text[at] <= '9') ++at, ++integer_digits;
    }
    bool is_float = false;
    if (at < n && text[at] == '.') {
      is_float = true;
      ++at;
      if (at >= n || text[at] < '0' || text[at] > '9') return "invalid number";
      while (at < n && text[at] >= '0' && text[at] <= '9') ++at;
    }
    if (at < n && (text[at] == 'e' || text[at] == 'E')) {
      is_float = true;
      ++at;
      if (at < n && (text[at] == '+' || text[at] == '-')) ++at;
      if (at >= n || text[at] < '0' || text[at] > '9') return "invalid number";
      while (at < n && text[at] >= '0' && text[at] <= '9') ++at;
    }
    // Integers of any length are fine (too long for 64 bits, they read as a
    // double); a floating-point number must not overflow a double.
    if (is_float || integer_digits > 19) {
      double value = 0;
      const char* first = text.data() + start;
      const auto parsed = std::from_chars(first, text.data() + at, value);
      if (parsed.ec == std::errc::result_out_of_range) {
        // Underflow reads as 0; only overflow is refused.
        const std::size_t e = text.substr(start, at - start).find_first_of("eE");
        long long exponent = 0;
        if (e != std::string_view::npos) {
          std::string_view digits = text.substr(start + e + 1, at - start - e - 1);
          const bool negative = !digits.empty() && digits[0] == '-';
          if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
          for (char d : digits) {
            if (exponent < 100000) exponent = exponent * 10 + (d - '0');
          }
          if (negative) exponent = -exponent;
        }
        if (static_cast<long long>(integer_digits) + exponent > 0) return "number out of range";
      }
    }
    return nullptr;
  };

  skip_space();
  bool expect_value = true;  // a value is due (else a separator or a closing bracket)
  for (;;) {
    if (expect_value) {
      if (at >= n) return where("unexpected end");
      const char c = text[at];
      const char* problem = nullptr;
      if (c == '{' || c == '[') {
        open += c;
        ++at;
        skip_space();
        if (at < n && text[at] == (c == '{' ? '}' : ']')) {
          open.pop_back();
          ++at;
          expect_value = false;
        } else if (c == '{') {
          // First member: a key, a colon, then a value.
          if (at >= n || text[at] != '"') return where("expected a key");
          if ((problem = string())) return where(problem);
          skip_space();
          if (at >= n || text[at] != ':') return where("expected ':'");
          ++at;
          skip_space();
        }
        continue;
      }
      if (c == '"') {
        problem = string();
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        problem = number();
      } else if (text.substr(at, 4) == "true" || text.substr(at, 4) == "null") {
        at += 4;
      } else if (text.substr(at, 5) == "false") {
        at += 5;
      } else {
        return where("unexpected character");
      }
      if (problem) return where(problem);
      expect_value = false;
      skip_space();
      continue;
    }
    skip_space();
    if (open.empty()) {
      if (at != n) return where("text after the value");
      return {};
    }
    if (at >= n) return where("unexpected end");
    const char c = text[at];
    if (c == ',') {
      ++at;
      skip_space();
      if (open.back() == '{') {
        if (at >= n || text[at] != '"') return where("expected a key");
        if (const char* problem = string()) return where(problem);
        skip_space();
        if (at >= n || text[at] != ':') return where("expected ':'");
        ++at;
        skip_space();
      }
      expect_value = true;
    } else if (c == (open.back() == '{' ? '}' : ']')) {
      open.pop_back();
      ++at;
    } else {
      return where("expected ',' or a closing bracket");
    }
  }
}

/// Whether `text` is one well-formed JSON value (see `json_text_problem`).
inline bool is_valid_json_text(std::string_view text) { return json_text_problem(text).empty(); }

/// `text` without the JSON whitespace around it.
inline std::string_view trim_json_space(std::string_view text) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

/// Appends the UTF-8 form of code point `cp`.
inline void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Decodes the JSON string `raw` (quotes included, well-formed: checked by
/// `json_text_problem`) into `out`; false when `raw` is not a string.
inline bool decode_json_string(std::string_view raw, std::string& out) {
  out.clear();
  if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"') return false;
  auto hex4 = [&raw](std::size_t at) {
    unsigned value = 0;
    for (std::size_t k = at; k < at + 4 && k < raw.size(); ++k) {
      const char h = raw[k];
      value = value * 16 + static_cast<unsigned>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return value;
  };
  for (std::size_t i = 1; i + 1 < raw.size(); ++i) {
    const char c = raw[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    const char e = raw[++i];
    switch (e) {
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        unsigned cp = hex4(i + 1);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < raw.size()) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(i + 3) - 0xDC00);
          i += 6;
        }
        append_utf8(out, cp);
        break;
      }
      default: out += e;  // " \\ /
    }
  }
  return true;
}

/// Calls `on_member(key, raw_value)` for each member of the JSON object
/// `text` (well-formed: checked by `json_text_problem`), in order, with the
/// key decoded and the value's text as it stands. False when `text` is not
/// an object.
template <class OnMember>
bool for_each_json_member(std::string_view text, OnMember&& on_member) {
  text = trim_json_space(text);
  if (text.empty() || text.front() != '{') return false;
  std::size_t at = 1;
  const std::size_t n = text.size();
  auto skip_space = [&] {
    while (at < n && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
  };
  auto skip_string = [&] {  // at the opening quote; ends after the closing one
    for (++at; at < n && text[at] != '"'; ++at) {
      if (text[at] == '\\') ++at;
    }
    ++at;
  };
  std::string key;
  for (;;) {
    skip_space();
    if (at >= n || text[at] == '}') return true;
    if (text[at] == ',') {
      ++at;
      continue;
    }
    const std::size_t key_start = at;
    skip_string();
    decode_json_string(text.substr(key_start, at - key_start), key);
    skip_space();
    ++at;  // ':'
    skip_space();
    const std::size_t value_start = at;
    int depth = 0;
    while (at < n) {
      const char c = text[at];
      if (c == '"') {
        skip_string();
        if (depth == 0) break;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;  // the end of the object
        if (--depth == 0) {
          ++at;
          break;
        }
      } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
        break;
      }
      ++at;
    }
    on_member(key, text.substr(value_start, at - value_start));
  }
}

}  // namespace jobwarden::detail
