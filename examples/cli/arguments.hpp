#pragma once
// The command line of one `jobwarden` command: `--name value`, `--name=value`,
// flags, repeatable options, and everything after `--` kept verbatim. Small on
// purpose: no abbreviations, no option bundling, no permutation, so what a
// user types means exactly one thing.

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace jobwarden_cli {

/// A mistake in how the tool was called. Its message is one line naming the
/// problem; the tool prints it and exits with status 2, having written nothing.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One option a command accepts.
struct OptionSpec {
  std::string name;          ///< without the leading `--`
  bool takes_value = false;  ///< `--name VALUE` / `--name=VALUE`, else a flag
  bool repeatable = false;   ///< may be given more than once (`--env`)
};

/// A parsed command line.
class Arguments {
 public:
  /// Parses `args` (the words after the command name) against `options`.
  /// With `accepts_command`, `--` ends the options and what follows is the
  /// command to run; without it, `--` is an error like any stray word.
  /// Up to `max_positionals` words that are not options are kept in order
  /// (`positionals()`: `jobwarden signal ... SIG`); more is an error.
  static Arguments parse(const std::vector<std::string>& args, const std::vector<OptionSpec>& options,
                         bool accepts_command = false, std::size_t max_positionals = 0) {
    Arguments parsed;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& word = args[i];
      if (word == "--") {
        if (!accepts_command) throw UsageError("unexpected \"--\": this command runs nothing");
        parsed.command_given_ = true;
        parsed.command_.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
        break;
      }
      if ((word.size() < 3 || word.compare(0, 2, "--") != 0) && parsed.positionals_.size() < max_positionals) {
        parsed.positionals_.push_back(word);
        continue;
      }
      if (word.size() < 3 || word.compare(0, 2, "--") != 0) {
        std::string hint = accepts_command ? " (put the command to run after \"--\")" : "";
        throw UsageError(fmt::format("unexpected argument \"{}\"{}", word, hint));
      }
      const std::size_t equals = word.find('=');
      const std::string name = word.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
      const OptionSpec* spec = find(options, name);
      if (spec == nullptr) throw UsageError("unknown option --" + name);
      std::string value;
      if (spec->takes_value) {
        if (equals != std::string::npos) {
          value = word.substr(equals + 1);
        } else if (i + 1 < args.size() && args[i + 1] != "--") {
          value = args[++i];
        } else {
          throw UsageError("option --" + name + " needs a value");
        }
      } else if (equals != std::string::npos) {
        throw UsageError("option --" + name + " takes no value");
      }
      auto& slot = parsed.values_[name];
      if (!slot.empty() && !spec->repeatable) throw UsageError("option --" + name + " given twice");
      slot.push_back(std::move(value));
    }
    return parsed;
  }

  /// Whether the option (or flag) was given.
  bool has(const std::string& name) const { return values_.count(name) != 0; }

  /// The value of a single-valued option, if given.
  std::optional<std::string> value(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second.back();
  }

  /// The value of an option that must be given.
  std::string required(const std::string& name) const {
    auto found = value(name);
    if (!found) throw UsageError("missing --" + name);
    return *found;
  }

  /// Every value of a repeatable option, in order.
  std::vector<std::string> values(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }

  /// Whether `--` was given, and the words after it.
  bool command_given() const { return command_given_; }
  const std::vector<std::string>& command() const { return command_; }

  /// The words that were not options, in order (see `parse`).
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  static const OptionSpec* find(const std::vector<OptionSpec>& options, const std::string& name) {
    for (const auto& option : options) {
      if (option.name == name) return &option;
    }
    return nullptr;
  }

  std::map<std::string, std::vector<std::string>> values_;
  bool command_given_ = false;
  std::vector<std::string> command_;
  std::vector<std::string> positionals_;
};

/// Parses a non-negative decimal integer for option `--name` (no sign, no
/// spaces, no trailing text), or throws a `UsageError` naming the option.
inline std::uint64_t parse_count(const std::string& text, const std::string& name,
                                 std::uint64_t max = UINT64_C(1) << 53) {
  if (text.empty() || text.size() > 16 || text.find_first_not_of("0123456789") != std::string::npos) {
    throw UsageError(fmt::format("--{}: \"{}\" is not a non-negative whole number", name, text));
  }
  const std::uint64_t value = std::stoull(text);
  if (value > max) throw UsageError(fmt::format("--{}: {} is too large (at most {})", name, text, max));
  return value;
}

}  // namespace jobwarden_cli
