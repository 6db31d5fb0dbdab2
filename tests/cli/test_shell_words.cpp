// The lexer that decides which `jobwarden run --commands` lines run without a
// shell (examples/cli/shell_words.hpp): what it splits and how, every reason
// it sends a line to /bin/sh, and — on fixed and on random lines — that what
// it splits is exactly what /bin/sh makes of the same words.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../../examples/cli/shell_words.hpp"
#include "catch.hpp"
#include "support.hpp"

using jobwarden_cli::execve_runs_as_is;
using jobwarden_cli::find_program;
using jobwarden_cli::ShellWords;
using jobwarden_cli::split_simple_command;

namespace {

using Strings = std::vector<std::string>;
using Assignments = std::vector<std::pair<std::string, std::string>>;

/// The argv of a line that must split.
Strings argv_of(const std::string& line) {
  const ShellWords words = split_simple_command(line);
  INFO("line: " << line << "  needs shell: " << words.needs_shell);
  REQUIRE(words.command);
  CHECK(words.needs_shell.empty());
  return words.command->argv;
}

/// Why a line that must not split needs the shell.
std::string reason_of(const std::string& line) {
  const ShellWords words = split_simple_command(line);
  INFO("line: " << line);
  REQUIRE_FALSE(words.command);
  CHECK_FALSE(words.needs_shell.empty());
  return words.needs_shell;
}

/// What `command` (run by popen's /bin/sh) prints, and its wait status.
std::string output_of(const std::string& command, int& status) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  status = ::pclose(pipe);
  return out;
}

/// The words /bin/sh makes of `line` (each one, as `printf '%s\n'` prints its
/// arguments): assignments and `exec` included, as plain words.
Strings shell_words_of(const std::string& line) {
  int status = -1;
  const std::string out = output_of("printf '%s\\n' " + line, status);
  REQUIRE(status == 0);
  Strings words;
  std::size_t begin = 0;
  while (begin < out.size()) {
    const std::size_t end = out.find('\n', begin);
    words.push_back(out.substr(begin, end - begin));
    begin = end + 1;
  }
  return words;
}

/// What the lexer made of `line`, in the same shape as `shell_words_of`.
Strings lexer_words_of(const ShellWords& words) {
  Strings all;
  for (const auto& [name, value] : words.command->assignments) all.push_back(name + "=" + value);
  if (words.command->exec) all.emplace_back("exec");
  for (const auto& arg : words.command->argv) all.push_back(arg);
  return all;
}

/// A directory of its own, removed with everything in it.
using jwtest::TempDir;

void write_file(const std::string& path, const std::string& content, mode_t mode) {
  std::ofstream(path, std::ios::binary) << content;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

}  // namespace

TEST_CASE("plain words split on spaces and tabs", "[shell_words]") {
  CHECK(argv_of("prog") == Strings{"prog"});
  CHECK(argv_of("  prog   a\tb  \t") == Strings{"prog", "a", "b"});
  CHECK(argv_of("/usr/bin/env --flag=1 -x a,b:c@d%e^f+g") ==
        Strings{"/usr/bin/env", "--flag=1", "-x", "a,b:c@d%e^f+g"});
  CHECK(argv_of("prog a#b c]d e=f") == Strings{"prog", "a#b", "c]d", "e=f"});  // '#' inside a word is literal
  CHECK(argv_of("prog \xc3\xa9t\xc3\xa9") == Strings{"prog", "\xc3\xa9t\xc3\xa9"});
}

TEST_CASE("single quotes keep everything literal", "[shell_words]") {
  CHECK(argv_of("prog 'a b'") == Strings{"prog", "a b"});
  CHECK(argv_of("prog 'a\"b' 'c\\d' '$HOME' '*' ';|&'") == Strings{"prog", "a\"b", "c\\d", "$HOME", "*", ";|&"});
  CHECK(argv_of("prog '' x") == Strings{"prog", "", "x"});
  CHECK(argv_of("prog a'b c'd") == Strings{"prog", "ab cd"});
  CHECK(argv_of("'my prog' x") == Strings{"my prog", "x"});
}

TEST_CASE("double quotes: a backslash escapes only the dollar, backquote, double quote and backslash", "[shell_words]") {
  CHECK(argv_of("prog \"a b\"") == Strings{"prog", "a b"});
  CHECK(argv_of("prog \"a\\\"b\" \"c\\\\d\" \"e\\$f\" \"g\\`h\"") == Strings{"prog", "a\"b", "c\\d", "e$f", "g`h"});
  CHECK(argv_of("prog \"a\\nb\" \"\\x\"") == Strings{"prog", "a\\nb", "\\x"});  // other backslashes stay
  CHECK(argv_of("prog \"\" \"'\" \"*?[~#!;&|<>(){}\"") == Strings{"prog", "", "'", "*?[~#!;&|<>(){}"});
  CHECK(argv_of("prog a\"b c\"'d e'f") == Strings{"prog", "ab cd ef"});
}

TEST_CASE("a backslash outside quotes makes the next character literal", "[shell_words]") {
  CHECK(argv_of("prog a\\ b") == Strings{"prog", "a b"});
  CHECK(argv_of("prog \\' \\\" \\\\ \\$x \\* \\; \\# \\~ \\!") ==
        Strings{"prog", "'", "\"", "\\", "$x", "*", ";", "#", "~", "!"});
  CHECK(argv_of("prog \\a") == Strings{"prog", "a"});
}

TEST_CASE("leading NAME=value words are the environment, then an optional exec", "[shell_words]") {
  ShellWords words = split_simple_command("FOO=1 BAR= _x9=\"a b\" prog FOO=2");
  REQUIRE(words.command);
  CHECK(words.command->assignments == Assignments{{"FOO", "1"}, {"BAR", ""}, {"_x9", "a b"}});
  CHECK(words.command->argv == Strings{"prog", "FOO=2"});  // after the program: an argument
  CHECK_FALSE(words.command->exec);

  words = split_simple_command("A=x=y exec prog -v");
  REQUIRE(words.command);
  CHECK(words.command->assignments == Assignments{{"A", "x=y"}});
  CHECK(words.command->exec);
  CHECK(words.command->argv == Strings{"prog", "-v"});

  words = split_simple_command("exec 'prog' a");
  REQUIRE(words.command);
  CHECK(words.command->exec);
  CHECK(words.command->argv == Strings{"prog", "a"});

  // Not assignments: not a name, or the '=' quoted: these are the program.
  CHECK(argv_of("1X=y prog") == Strings{"1X=y", "prog"});
  CHECK(argv_of("F-O=1 prog") == Strings{"F-O=1", "prog"});
  CHECK(argv_of("=x prog") == Strings{"=x", "prog"});
  CHECK(argv_of("\"FOO=1\" prog") == Strings{"FOO=1", "prog"});
  CHECK(argv_of("FOO\\=1 prog") == Strings{"FOO=1", "prog"});
  CHECK(argv_of("'F'OO=1 prog") == Strings{"FOO=1", "prog"});
  // exec's own word after it is literal: the shell would exec a program of that name.
  CHECK(argv_of("exec FOO=1 prog") == Strings{"FOO=1", "prog"});
  CHECK(argv_of("exec cd") == Strings{"cd"});
}

TEST_CASE("every line that needs the shell says why", "[shell_words]") {
  for (const char c : std::string("$`;&|<>(){}*?[~!")) {
    const std::string line = std::string("prog a") + c + "b";
    INFO(line);
    CHECK(reason_of(line) == std::string("unquoted '") + c + "'");
  }
  CHECK(reason_of("prog $HOME") == "unquoted '$'");
  CHECK(reason_of("prog ~/x") == "unquoted '~'");
  CHECK(reason_of("sh -c \"kill -SEGV \\$\\$\" ; true") == "unquoted ';'");
  CHECK(reason_of("prog a && prog b") == "unquoted '&'");
  CHECK(reason_of("prog > out") == "unquoted '>'");
  CHECK(reason_of("prog 2>&1") == "unquoted '>'");
  CHECK(reason_of("prog \"$HOME\"") == "'$' inside double quotes");
  CHECK(reason_of("prog \"`date`\"") == "'`' inside double quotes");
  CHECK(reason_of("prog # a comment") == "a '#' starting a word (a comment)");
  CHECK(reason_of("prog 'open") == "an unclosed single quote");
  CHECK(reason_of("prog \"open") == "an unclosed double quote");
  CHECK(reason_of("prog \"open\\\"") == "an unclosed double quote");
  CHECK(reason_of("prog \"open\\") == "an unclosed double quote");
  CHECK(reason_of("prog a\\") == "a backslash ends the line");
  CHECK(reason_of("") == "no words");
  CHECK(reason_of(" \t ") == "no words");
  CHECK(reason_of("FOO=1") == "assignments without a command");
  CHECK(reason_of("FOO=1 BAR=2") == "assignments without a command");
  CHECK(reason_of("exec") == "'exec' without a program");
  CHECK(reason_of("FOO=1 exec") == "'exec' without a program");
  CHECK(reason_of("exec -a name prog") == "'exec' with options");
  CHECK(reason_of("'' a") == "an empty program name");
  CHECK(reason_of("FOO=1 \"\"") == "an empty program name");
  for (const char* word : {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
                           "in", "function", "select", "time", "coproc", "]]"}) {
    INFO(word);
    CHECK(reason_of(std::string(word) + " x") == std::string("the reserved word '") + word + "'");
  }
  for (const char* word : {"cd", "export", "set", ".", "eval", "source", "unset", "alias", "read", "exit", "return",
                           "trap", "wait", "umask", "ulimit", "shift", "readonly", "local", "command", "type",
                           "hash", "getopts", "echo", "printf", "test", "kill", "pwd", "true", "false", ":"}) {
    INFO(word);
    CHECK(reason_of(std::string(word) + " x") == std::string("the shell builtin '") + word + "'");
  }
  CHECK(reason_of("[[ -f x ]]") == "unquoted '['");
  // Quoting a builtin's name does not stop the shell from running its builtin.
  CHECK(reason_of("'cd' /tmp") == "the shell builtin 'cd'");
  CHECK(reason_of("FOO=1 echo x") == "the shell builtin 'echo'");
}

TEST_CASE("what the lexer splits is what /bin/sh makes of the same words", "[shell_words]") {
  const std::vector<std::string> lines = {
      "prog a b",
      "  prog\t 'a b'  \"c d\" e\\ f ",
      "prog '' \"\" a''b",
      "prog \"a\\\"b\" \"c\\\\d\" \"e\\$f\" \"g\\`h\" \"i\\nj\" \"\\x\"",
      "prog \\' \\\" \\\\ \\$x \\* \\; \\# \\~ \\! \\a",
      "prog a#b c]d e=f %^,:@+-",
      "FOO=1 BAR= _x9=\"a b\" prog FOO=2",
      "A=x=y exec prog -v",
      "1X=y F-O=1 \"FOO=1\" FOO\\=1 'F'OO=1",
      "prog 'it'\\''s' \"say \\\"hi\\\"\"",
  };
  for (const auto& line : lines) {
    INFO("line: " << line);
    const ShellWords words = split_simple_command(line);
    REQUIRE(words.command);
    CHECK(lexer_words_of(words) == shell_words_of(line));
  }

  // Random lines over the characters that matter: every one the lexer
  // accepts must split as the shell splits it.
  std::mt19937 random(20261203);
  const std::string alphabet = "ab= \t'\"\\$`;#*~!x_9";
  int accepted = 0;
  for (int i = 0; i < 3000 && accepted < 300; ++i) {
    std::string line = "p ";
    const int length = 1 + static_cast<int>(random() % 12);
    for (int k = 0; k < length; ++k) line += alphabet[random() % alphabet.size()];
    const ShellWords words = split_simple_command(line);
    if (!words.command) continue;
    ++accepted;
    INFO("line: " << line);
    CHECK(lexer_words_of(words) == shell_words_of(line));
  }
  CHECK(accepted >= 100);  // the comparison covered many lines, not a few
}

TEST_CASE("execve_runs_as_is: binaries and #! scripts yes, other executables need a shell", "[shell_words]") {
  TempDir dir;
  write_file(dir / "script", "#!/bin/sh\nexit 0\n", 0755);
  write_file(dir / "bare", "exit 0\n", 0755);  // no #!: only a shell runs it
  write_file(dir / "empty", "", 0755);
  write_file(dir / "plain", "#!/bin/sh\n", 0644);  // not executable
  ::mkdir((dir / "sub").c_str(), 0755);
  const std::string path = "/nonexistent:" + dir.path() + ":/usr/bin:/bin";

  CHECK(execve_runs_as_is("sh", "/usr/bin:/bin", ""));  // an ELF binary
  CHECK(execve_runs_as_is(dir / "script", "", ""));
  CHECK_FALSE(execve_runs_as_is(dir / "bare", "", ""));
  CHECK_FALSE(execve_runs_as_is(dir / "empty", "", ""));
  CHECK(execve_runs_as_is(dir / "plain", "", ""));      // execve fails with EACCES by itself
  CHECK(execve_runs_as_is(dir / "missing", "", ""));    // ... or ENOENT
  CHECK(execve_runs_as_is(dir / "sub", "", ""));        // ... or EACCES for a directory
  CHECK(execve_runs_as_is("no-such-program-here", path, ""));
  // Names are looked up in PATH; relative paths and PATH entries from cwd.
  CHECK(execve_runs_as_is("script", path, ""));
  CHECK_FALSE(execve_runs_as_is("bare", path, ""));
  CHECK_FALSE(execve_runs_as_is("./bare", "", dir.path()));
  CHECK_FALSE(execve_runs_as_is("bare", ".", dir.path()));
  CHECK(execve_runs_as_is("./script", "", dir.path()));

  CHECK(find_program("script", path, "") == dir / "script");
  CHECK(find_program("plain", path, "").empty());  // not executable: skipped, as execvp skips it
  CHECK(find_program("sub", path, "").empty());
  CHECK(find_program("sh", "/nonexistent:/bin", "") == "/bin/sh");
  CHECK(find_program("x/y", path, "/base") == "/base/x/y");
  CHECK(find_program("/abs/y", path, "/base") == "/abs/y");
}

namespace {

/// `text` as one single-quoted word of /bin/sh.
std::string sh_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// The line with `exec HELPER --` before its last command's program, as the
/// tool rewrites it; empty when the line is left as it is.
std::string with_exec(const std::string& line) {
  const auto last = jobwarden_cli::find_last_command(line);
  if (!last) return {};
  return line.substr(0, last->insert_at) + "exec H -- " + line.substr(last->program_at);
}

}  // namespace

TEST_CASE("find_last_command: the command a shell's line ends with", "[shell_words]") {
  CHECK(with_exec("cd /tmp && make") == "cd /tmp && exec H -- make");
  CHECK(with_exec("a; b || ./scan --out \"$OUT/x\" > log 2>&1") == "a; b || exec H -- ./scan --out \"$OUT/x\" > log 2>&1");
  CHECK(with_exec("prog \"$HOME\" ${USER} $1 *.c ~/x") == "exec H -- prog \"$HOME\" ${USER} $1 *.c ~/x");
  CHECK(with_exec("x=1;FOO=$x BAR='a b' prog") == "x=1;FOO=$x BAR='a b' exec H -- prog");
  CHECK(with_exec("true && exec sh -c 'kill -SEGV $$'") == "true && exec H -- sh -c 'kill -SEGV $$'");
  CHECK(with_exec("true && FOO=1 exec  prog a") == "true && FOO=1 exec H -- prog a");
  CHECK(with_exec("a > x; 'my prog' a # b; c | d") == "a > x; exec H -- 'my prog' a # b; c | d");
  CHECK(with_exec("a 2>&1 && b <in") == "a 2>&1 && exec H -- b <in");
  CHECK(with_exec("echo ';&|(' \"a;b\" a\\;b; prog") == "echo ';&|(' \"a;b\" a\\;b; exec H -- prog");
  CHECK(with_exec("git log -1 --format=%H $REF && prog") == "git log -1 --format=%H $REF && exec H -- prog");

  const auto last = jobwarden_cli::find_last_command("cd / && 'my prog' x");
  REQUIRE(last);
  CHECK(last->program == "my prog");

  // Left to the shell: the last command is not a program the shell would exec
  // as it is, or exec would change what the line does.
  for (const char* line : {
           "a | b",                              // a pipeline
           "a && b &",                           // a background job
           "a & b",
           "(cd x && make)",                     // a subshell
           "cd x && (make)",
           "f() { a; }; f",                      // a function
           "a $(b) && c",                        // command substitution
           "a `b` && c",
           "a \"$(b)\" && c",
           "a ${x:-y} && c",                     // ${...} beyond a name
           "a && c \"${x%y}\"",
           "case $x in a) b;; esac",             // ;; and reserved words
           "if a; then b; fi",
           "while a; do b; done",
           "for i in 1 2; do b; done; c",
           "{ a; b; }",
           "a; ! b",
           "trap 'rm x' EXIT; prog",             // exec would skip the trap
           "alias p=q; p",                       // what the word names may change
           ". ./env.sh && prog",
           "source ./env.sh && prog",
           "eval \"$x\"; prog",
           "set -x; prog",
           "unset PATH; prog",
           "hash -r; prog",
           "cd x && cd y",                       // a builtin runs in the shell
           "a && echo done",
           "a && $CC x.c",                       // a program the shell finds by expansion
           "a && \"$CC\" x.c",
           "a && *.sh",
           "a && > out prog",                    // a redirection before the program
           "a && 2>err prog",
           "a && prog>out",
           "a && prog $$",                       // $$ would become the program's own pid
           "a && prog \"$$\"",
           "a && FOO=1",                         // no program
           "a &&",
           "a;",
           "a && exec",
           "a && exec -a x prog",
           "a && -x",
           "a <<EOF",                            // a here document
           "a >| out && b",
           "a 'unclosed && b",
           "a \"unclosed && b",
           "a && b\\",
       }) {
    INFO(line);
    CHECK_FALSE(jobwarden_cli::find_last_command(line));
  }
}

TEST_CASE("find_last_command: the rewritten line runs as the original did", "[shell_words]") {
  // The shell runs the original and the rewritten line, the latter with
  // `env` as the helper: both print the same words and variables.
  TempDir dir;
  write_file(dir / "show", "#!/bin/sh\nprintf '%s|' \"$0\" \"$@\" \"$FOO\"; echo\n", 0755);
  const std::vector<std::string> lines = {
      "cd / && " + (dir / "show") + " a 'b c' \"$HOME\" ${HOME}x",
      "FOO=outer; export FOO; false || FOO='in ner' " + (dir / "show") + " x",
      "true; exec " + (dir / "show") + " y 2>&1 # comment",
  };
  for (const auto& line : lines) {
    INFO(line);
    const auto last = jobwarden_cli::find_last_command(line);
    REQUIRE(last);
    const std::string rewritten = line.substr(0, last->insert_at) + "exec env -- " + line.substr(last->program_at);
    auto run = [](const std::string& script) {
      int status = -1;
      std::string out = output_of("/bin/sh -c " + sh_quote(script), status);
      CHECK(status == 0);
      return out;
    };
    const std::string original = run(line);
    CHECK_FALSE(original.empty());
    CHECK(run(rewritten) == original);
  }
}
