// Fuzzes the JSON text written and checked by hand (detail/json_text.hpp)
// against nlohmann: whatever the bytes, the well-formedness check agrees
// with nlohmann's parser, a string is escaped exactly as nlohmann's dump
// escapes it (invalid UTF-8 replaced by U+FFFD in the same places), and the
// members a well-formed object yields are the ones nlohmann reads.
//
// Built with clang's libFuzzer (-DJOBWARDEN_BUILD_FUZZERS=ON, CXX=clang++).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <jobwarden/detail/json_fields.hpp>
#include <jobwarden/detail/json_text.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  namespace jd = jobwarden::detail;

  std::string escaped;
  jd::append_json_string(escaped, text);
  if (escaped != jd::dump_json(nlohmann::json(text))) std::abort();

  // nlohmann skips a byte order mark at the start and takes a NUL byte for
  // the end of the input; the check refuses both, as text written into a
  // status file must be JSON to its last byte.
  const bool bom = size >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0;
  const bool nul = text.find('\0') != std::string::npos;
  const bool valid = jd::is_valid_json_text(text);
  if (nul && valid) std::abort();
  if (!bom && !nul && valid != nlohmann::json::accept(text)) std::abort();

  if (valid) {
    const nlohmann::json document = nlohmann::json::parse(text);
    if (document.is_object()) {
      nlohmann::json members = nlohmann::json::object();
      const bool is_object = jd::for_each_json_member(text, [&](const std::string& key, std::string_view raw) {
        members[key] = nlohmann::json::parse(raw);
      });
      if (!is_object || members != document) std::abort();
    }
  }
  return 0;
}
