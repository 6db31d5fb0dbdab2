#pragma once
/// \file
/// Signal names for outcomes and options: `"SIGSEGV"` rather than `11`.

#include <csignal>
#include <optional>
#include <string>
#include <string_view>

namespace jobwarden {

namespace detail {
struct SignalName {
  int number;
  const char* name;
};
inline const SignalName* signal_table(std::size_t& size) {
  static const SignalName table[] = {
      {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},     {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
      {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},   {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
      {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},   {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
      {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},   {SIGTERM, "SIGTERM"}, {SIGCHLD, "SIGCHLD"},
      {SIGCONT, "SIGCONT"}, {SIGSTOP, "SIGSTOP"},   {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},
      {SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},     {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
      {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGSYS, "SIGSYS"},
#ifdef SIGSTKFLT
      {SIGSTKFLT, "SIGSTKFLT"},
#endif
#ifdef SIGPWR
      {SIGPWR, "SIGPWR"},
#endif
#ifdef SIGIO
      {SIGIO, "SIGIO"},
#endif
  };
  size = sizeof(table) / sizeof(table[0]);
  return table;
}
}  // namespace detail

namespace detail {
/// Whether `number` is a signal this system has (1 to NSIG - 1).
constexpr bool is_signal_number(int number) noexcept {
#ifdef NSIG
  return number > 0 && number < NSIG;
#else
  return number > 0 && number < 65;
#endif
}
}  // namespace detail

/// `"SIGSEGV"` for 11; `"SIG<n>"` for a number without a name (real-time signals).
inline std::string signal_name(int number) {
  std::size_t n = 0;
  const detail::SignalName* table = detail::signal_table(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (table[i].number == number) return table[i].name;
  }
  return "SIG" + std::to_string(number);
}

/// Parses `"SIGTERM"`, `"TERM"`, `"term"`, `"15"` or `"SIG15"` (as `signal_name`
/// writes a signal without a name); `std::nullopt` if it is no signal.
inline std::optional<int> signal_from_string(std::string_view text) {
  if (text.empty()) return std::nullopt;
  bool digits = true;
  for (char c : text) digits = digits && c >= '0' && c <= '9';
  if (digits) {
    if (text.size() > 3) return std::nullopt;
    int value = std::stoi(std::string(text));
#ifdef NSIG
    if (value <= 0 || value >= NSIG) return std::nullopt;
#endif
    return value;
  }
  std::string upper;
  for (char c : text) upper += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  if (upper.rfind("SIG", 0) != 0) upper = "SIG" + upper;
  // "SIG40": what signal_name writes for a signal without a name.
  if (upper.size() > 3 && upper.find_first_not_of("0123456789", 3) == std::string::npos) {
    return signal_from_string(std::string_view(upper).substr(3));
  }
  std::size_t n = 0;
  const detail::SignalName* table = detail::signal_table(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (upper == table[i].name) return table[i].number;
  }
  return std::nullopt;
}

}  // namespace jobwarden
