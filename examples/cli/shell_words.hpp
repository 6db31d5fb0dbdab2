#pragma once
// `jobwarden run --commands FILE`: which lines need a shell, and the argv of
// those that do not.
//
// A shell between the supervisor and a program hides how the program ended:
// /bin/sh turns a child's SIGSEGV into exit status 139 and a program it cannot
// find into 127, and 139 or 127 is also what a program may exit with. So a
// line that is one simple command is run without a shell: split here into
// words exactly as a POSIX shell would split it, and started by the library,
// which reports a crash with its signal and a program that cannot be started
// as spawn_failed with the reason.
//
// The lexer is strict: it accepts only what it can split with certainty and
// sends everything else to /bin/sh -c. Accepted:
//   - words of plain characters, separated by spaces and tabs;
//   - 'single quotes' (everything literal up to the next ');
//   - "double quotes", where a backslash escapes only $ ` " and \ (before any
//     other character it stays, as POSIX says) and $ or ` needs the shell;
//   - a backslash outside quotes, which makes the next character literal;
//   - leading NAME=value words (assignments: the worker's environment), and
//     then an optional `exec` (the shell would exec the program too).
// The shell is needed for: unquoted $ ` ; & | < > ( ) { } * ? [ ~ !, a word
// starting with # (a comment), an unclosed quote, a backslash ending the
// line, a line of assignments only, `exec` alone or with options, and a first
// word that is a reserved word (if, for, while, case, !, ...) or a builtin of
// some shell (cd, export, set, ., eval, echo, test, kill, ...). A builtin
// runs inside the shell, so the shell's exit status is the whole truth about
// it: nothing is lost by leaving it there, and echo or printf keep the
// shell's own behaviour.
//
// For a line the shell must run, `find_last_command` finds the program its
// last command runs, when the shell could exec it without changing what the
// line does: the tool then puts an `exec` of itself before that program, so
// the program becomes the worker's process (see jobwarden.cpp,
// `spec_for_line`).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace jobwarden_cli {

/// A line that is one simple command, split into its parts.
struct SimpleCommand {
  /// Leading `NAME=value` words, in order (a later one for the same name wins).
  std::vector<std::pair<std::string, std::string>> assignments;
  /// The program and its arguments, quotes removed.
  std::vector<std::string> argv;
  /// The line said `exec` before the program.
  bool exec = false;
};

/// What `split_simple_command` found: the command, or why the line needs a shell.
struct ShellWords {
  std::optional<SimpleCommand> command;
  /// Empty when `command` is set; otherwise a short reason ("unquoted '$'").
  std::string needs_shell;
};

namespace shell_words_detail {

inline bool is_name(const std::string& text) {
  if (text.empty()) return false;
  auto name_start = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!name_start(text[0])) return false;
  return std::all_of(text.begin() + 1, text.end(),
                     [&](char c) { return name_start(c) || (c >= '0' && c <= '9'); });
}

/// Words that are reserved in the command position of a POSIX shell, or of
/// bash or ksh (a /bin/sh may be either).
inline bool is_reserved_word(const std::string& word) {
  static const char* const words[] = {"!",    "{",    "}",  "[[",    "]]",     "case",     "do",
                                      "done", "elif", "else", "esac",  "fi",     "for",      "function",
                                      "if",   "in",   "then", "until", "while",  "select",   "time",
                                      "coproc"};
  return std::find(std::begin(words), std::end(words), word) != std::end(words);
}

/// Builtins of dash, bash and ksh: POSIX's special and regular builtins and
/// the common extensions.
inline bool is_builtin(const std::string& word) {
  static const char* const words[] = {
      ".",       ":",       "[",       "alias",   "bg",       "bind",     "break",   "builtin", "caller",
      "cd",      "chdir",   "command", "compgen", "complete", "compopt",  "continue", "declare", "dirs",
      "disown",  "echo",    "enable",  "eval",    "exec",     "exit",     "export",  "false",   "fc",
      "fg",      "getopts", "hash",    "help",    "history",  "jobs",     "kill",    "let",     "local",
      "logout",  "mapfile", "popd",    "print",   "printf",   "pushd",    "pwd",     "read",    "readarray",
      "readonly", "return", "set",     "shift",   "shopt",    "source",   "suspend", "test",    "times",
      "trap",    "true",    "type",    "typeset", "ulimit",   "umask",    "unalias", "unset",   "wait",
      "whence"};
  return std::find(std::begin(words), std::end(words), word) != std::end(words);
}

/// One word as the lexer read it.
struct Word {
  std::string value;          // quotes removed
  std::size_t plain_lead = 0;  // how many leading characters were plain (unquoted, unescaped)
  bool any_quoting = false;    // some part was quoted or escaped
};

}  // namespace shell_words_detail

/// Splits `line` (one line of a commands file, no newline) if it is one
/// simple command a POSIX shell would run without expanding anything;
/// otherwise says why the shell is needed.
inline ShellWords split_simple_command(const std::string& line) {
  using shell_words_detail::Word;
  ShellWords result;
  auto shell = [&](std::string why) {
    result.command.reset();
    result.needs_shell = std::move(why);
    return result;
  };

  std::vector<Word> words;
  std::optional<Word> word;  // the word being read
  auto current = [&]() -> Word& {
    if (!word) word.emplace();
    return *word;
  };
  const std::size_t size = line.size();
  for (std::size_t i = 0; i < size; ++i) {
    const char c = line[i];
    switch (c) {
      case ' ':
      case '\t':
        if (word) {
          words.push_back(std::move(*word));
          word.reset();
        }
        break;
      case '\\':
        if (i + 1 >= size) return shell("a backslash ends the line");
        current().value += line[++i];
        word->any_quoting = true;
        break;
      case '\'': {
        const std::size_t close = line.find('\'', i + 1);
        if (close == std::string::npos) return shell("an unclosed single quote");
        current().value += line.substr(i + 1, close - i - 1);
        word->any_quoting = true;
        i = close;
        break;
      }
      case '"': {
        Word& w = current();
        w.any_quoting = true;
        bool closed = false;
        for (++i; i < size; ++i) {
          const char d = line[i];
          if (d == '"') {
            closed = true;
            break;
          }
          if (d == '$' || d == '`') return shell(std::string("'") + d + "' inside double quotes");
          if (d == '\\') {
            if (i + 1 >= size) break;  // unclosed
            const char next = line[i + 1];
            if (next == '$' || next == '`' || next == '"' || next == '\\') {
              w.value += next;
              ++i;
              continue;
            }
            w.value += '\\';  // a backslash before anything else stays
            continue;
          }
          w.value += d;
        }
        if (!closed) return shell("an unclosed double quote");
        break;
      }
      case '$':
      case '`':
      case ';':
      case '&':
      case '|':
      case '<':
      case '>':
      case '(':
      case ')':
      case '{':
      case '}':
      case '*':
      case '?':
      case '[':
      case '~':
      case '!':
        return shell(std::string("unquoted '") + c + "'");
      case '#':
        if (!word) return shell("a '#' starting a word (a comment)");
        [[fallthrough]];
      default: {
        Word& w = current();
        if (!w.any_quoting && w.plain_lead == w.value.size()) ++w.plain_lead;
        w.value += c;
        break;
      }
    }
  }
  if (word) words.push_back(std::move(*word));

  SimpleCommand command;
  std::size_t next = 0;
  for (; next < words.size(); ++next) {
    const Word& w = words[next];
    const std::size_t equals = w.value.find('=');
    if (equals == std::string::npos || equals >= w.plain_lead) break;
    const std::string name = w.value.substr(0, equals);
    if (!shell_words_detail::is_name(name)) break;
    command.assignments.emplace_back(name, w.value.substr(equals + 1));
  }
  if (next == words.size()) return shell(words.empty() ? "no words" : "assignments without a command");
  if (words[next].value == "exec") {
    command.exec = true;
    ++next;
    if (next == words.size()) return shell("'exec' without a program");
    if (!words[next].value.empty() && words[next].value[0] == '-') return shell("'exec' with options");
  } else if (shell_words_detail::is_reserved_word(words[next].value)) {
    return shell("the reserved word '" + words[next].value + "'");
  } else if (shell_words_detail::is_builtin(words[next].value)) {
    return shell("the shell builtin '" + words[next].value + "'");
  }
  if (words[next].value.empty()) return shell("an empty program name");
  for (; next < words.size(); ++next) command.argv.push_back(std::move(words[next].value));
  result.command = std::move(command);
  return result;
}

/// Where the shell's line can still end in `exec`: for a line that needs
/// the shell, the position of its last command, so that the program it
/// runs becomes the worker's process (its crash is the worker's crash).
struct LastCommand {
  /// Where the text to put before the program goes: the `exec` the line
  /// already has there, or else the program's word.
  std::size_t insert_at = 0;
  /// Where the program's word begins (the text from `insert_at` to here, an
  /// `exec` and the blanks after it, is replaced).
  std::size_t program_at = 0;
  /// The program's name, quotes removed.
  std::string program;
};

namespace shell_words_detail {

/// Words that change what a later command of the same line is, or what the
/// shell does when it ends: a line with one of them is left as it is.
inline bool changes_later_commands(const std::string& word) {
  static const char* const words[] = {"trap", "alias", "unalias", "eval", ".", "source", "hash", "enable",
                                      "builtin", "set", "unset", "function", "shopt"};
  return std::find(std::begin(words), std::end(words), word) != std::end(words) || is_reserved_word(word);
}

}  // namespace shell_words_detail

/// For a line that needs the shell (`split_simple_command` said so), finds
/// the command the line ends with, when it can be exec'd by the shell without
/// changing what the line does: the line's last top-level command, after
/// its last `;`, `&&` or `||` (or the whole line), a simple command whose
/// program is a literal word that is not a builtin or reserved word, and
/// whose other words may use expansions and redirections. Strict again:
/// none for a line with `$(`, a backquote, `${` holding anything but a
/// name, a pipe, a single `&` (not in `>&` `<&`), `( )`, `;;`, a here
/// document, a word that changes later commands or the shell's exit (trap,
/// alias, eval, ., source, set, unset, hash, a reserved word...), or a `$$`
/// in the last command (exec would make it the program's own pid).
inline std::optional<LastCommand> find_last_command(const std::string& line) {
  using shell_words_detail::changes_later_commands;
  const std::size_t size = line.size();
  std::size_t tail = 0;        // where the last top-level command begins
  std::size_t end = size;      // where the line's commands end (a comment follows)
  struct Span {
    std::size_t begin, end;
    bool pid;  // holds an expanded $$
  };
  std::vector<Span> words;     // top-level words
  std::optional<std::size_t> word_begin;
  std::string word_text;       // the word so far, quotes and backslashes removed
  bool word_pid = false;
  auto end_word = [&](std::size_t at) -> bool {
    if (!word_begin) return true;
    if (changes_later_commands(word_text)) return false;
    words.push_back({*word_begin, at, word_pid});
    word_begin.reset();
    word_text.clear();
    word_pid = false;
    return true;
  };
  auto in_word = [&](std::size_t at) {
    if (!word_begin) word_begin = at;
  };
  for (std::size_t i = 0; i < size; ++i) {
    const char c = line[i];
    const char next = i + 1 < size ? line[i + 1] : '\0';
    switch (c) {
      case ' ':
      case '\t':
        if (!end_word(i)) return std::nullopt;
        break;
      case '\\':
        if (i + 1 >= size) return std::nullopt;
        in_word(i);
        word_text += line[++i];
        break;
      case '\'': {
        const std::size_t close = line.find('\'', i + 1);
        if (close == std::string::npos) return std::nullopt;
        in_word(i);
        word_text += line.substr(i + 1, close - i - 1);
        i = close;
        break;
      }
      case '"': {
        in_word(i);
        for (++i; i < size && line[i] != '"'; ++i) {
          if (line[i] == '`' || (line[i] == '$' && i + 1 < size && (line[i + 1] == '(' || line[i + 1] == '{'))) {
            return std::nullopt;
          }
          if (line[i] == '$' && i + 1 < size && line[i + 1] == '$') word_pid = true;
          if (line[i] == '\\') ++i;
          if (i < size) word_text += line[i];
        }
        if (i >= size) return std::nullopt;
        break;
      }
      case '`':
      case '(':
      case ')':
        return std::nullopt;
      case '$':
        if (next == '(') return std::nullopt;
        if (next == '{') {
          const std::size_t close = line.find('}', i + 2);
          if (close == std::string::npos || close == i + 2 ||
              !shell_words_detail::is_name(line.substr(i + 2, close - i - 2))) {
            return std::nullopt;
          }
          in_word(i);
          word_text += line.substr(i, close - i + 1);
          i = close;
          break;
        }
        if (next == '$') word_pid = true;
        in_word(i);
        word_text += c;
        break;
      case '<':
      case '>':
        if (c == '<' && next == '<') return std::nullopt;  // a here document
        if (next == '|') return std::nullopt;               // >| (clobber), kept simple
        in_word(i);  // a redirection stays with the words around it
        word_text += c;
        if (next == '&') word_text += line[++i];  // >& <&: a descriptor, not a separator
        break;
      case ';':
        if (!end_word(i)) return std::nullopt;
        if (next == ';') return std::nullopt;  // ;; ends a case item
        tail = i + 1;
        break;
      case '&':
      case '|':
        if (!end_word(i)) return std::nullopt;
        if (next != c) return std::nullopt;  // a background job, a pipe
        tail = i + 2;
        ++i;
        break;
      case '#':
        if (!word_begin) {
          end = i;
          i = size;
          break;
        }
        [[fallthrough]];
      default:
        in_word(i);
        word_text += c;
        break;
    }
  }
  if (!end_word(end)) return std::nullopt;

  // The last command's words: assignments, an optional exec, the program.
  LastCommand last;
  bool exec = false;
  for (const auto& [begin, finish, pid] : words) {
    if (begin < tail) continue;
    if (pid) return std::nullopt;
    const std::string raw = line.substr(begin, finish - begin);
    if (!last.program.empty()) continue;
    if (raw.find_first_of("<>") != std::string::npos) return std::nullopt;  // a redirection before the program
    const std::size_t equals = raw.find('=');
    if (!exec && equals != std::string::npos && shell_words_detail::is_name(raw.substr(0, equals))) continue;
    if (!exec && raw == "exec") {
      exec = true;
      last.insert_at = begin;
      continue;
    }
    const ShellWords program = split_simple_command(raw);
    if (!program.command || program.command->argv.size() != 1 || !program.command->assignments.empty() ||
        program.command->exec || program.command->argv[0][0] == '-') {
      return std::nullopt;
    }
    if (!exec) last.insert_at = begin;
    last.program_at = begin;
    last.program = program.command->argv[0];
  }
  if (last.program.empty()) return std::nullopt;
  return last;
}

/// The file execvp would run for `program` (a command's first word), looked
/// up from directory `cwd` (empty: this process's): a name with a '/' is
/// that path; another name is looked up in each directory of `path_env`
/// (empty: /usr/local/bin:/usr/bin:/bin), the first executable regular file
/// wins. Empty when there is none.
inline std::string find_program(const std::string& program, const std::string& path_env, const std::string& cwd) {
  auto in_cwd = [&](const std::string& path) {
    return path.empty() || path[0] == '/' || cwd.empty() ? path : cwd + "/" + path;
  };
  if (program.find('/') != std::string::npos) return in_cwd(program);
  const std::string search = path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env;
  std::size_t begin = 0;
  while (begin <= search.size()) {
    std::size_t end = search.find(':', begin);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    const std::string candidate = in_cwd(dir + "/" + program);
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    begin = end + 1;
  }
  return {};
}

/// Whether execve() itself runs `program` (a command's first word, found as
/// `find_program` finds it): true for an ELF (or Mach-O) binary or a `#!`
/// script, and for a program that cannot be found or read (its start then
/// fails or succeeds by itself, and is reported as it is). False for an
/// executable file of another format, such as a script without a `#!` line:
/// execve() refuses it (ENOEXEC) and only a shell runs it (as a shell
/// script), so such a line still goes through /bin/sh.
inline bool execve_runs_as_is(const std::string& program, const std::string& path_env, const std::string& cwd) {
  const std::string found = find_program(program, path_env, cwd);
  if (found.empty()) return true;
  struct stat info {};
  if (::stat(found.c_str(), &info) != 0 || !S_ISREG(info.st_mode) || ::access(found.c_str(), X_OK) != 0) {
    return true;  // execve fails by itself (ENOENT, EACCES...): the reason is reported
  }
  const int fd = ::open(found.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return true;  // execute-only: only execve can run it at all
  unsigned char head[4] = {0, 0, 0, 0};
  ssize_t n;
  do {
    n = ::read(fd, head, sizeof head);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n >= 2 && head[0] == '#' && head[1] == '!') return true;
  if (n < 4) return false;
  const unsigned long magic = (static_cast<unsigned long>(head[0]) << 24) | (head[1] << 16) | (head[2] << 8) | head[3];
  switch (magic) {
    case 0x7f454c46UL:  // ELF
    case 0xfeedfaceUL:  // Mach-O, 32 and 64 bits, either byte order, and universal
    case 0xfeedfacfUL:
    case 0xcefaedfeUL:
    case 0xcffaedfeUL:
    case 0xcafebabeUL:
      return true;
    default:
      return false;
  }
}

}  // namespace jobwarden_cli
