// jobwarden: the command-line tool of docs/contract.md, built only on jobwarden's
// public headers. One function per command (`logs` is in logs.hpp, run's
// `--input` in input.hpp, `--detach` in detach.hpp, `status --format tsv` in
// joblog.hpp):
//
//   jobwarden run    --root DIR --job ID [options] -- CMD [ARG...]
//   jobwarden run    --root DIR --job ID [options] --commands FILE|-
//   jobwarden status --root DIR --job ID [--json | --format F] [--watch]
//   jobwarden list   --root DIR [--json]
//   jobwarden logs   --root DIR --job ID [--worker W] [--stderr] [--follow]
//   jobwarden stop   --root DIR --job ID [--grace DUR]
//   jobwarden clean  --root DIR --older-than DUR [--dry-run]
//   jobwarden report [--state S] [--done N --total M] [--progress JSON]
//                    [--message TEXT] [--result JSON]
//
// Exit status: 0 success (for `run`: every worker succeeded); 1 the job ran
// and a worker ended otherwise (or the command could not do its work); 2 a
// usage or input error — one line on stderr, and nothing written to disk.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <jobwarden/detail/json_text.hpp>
#include <jobwarden/job_control.hpp>
#include <jobwarden/jobwarden.hpp>
#include <jobwarden/slurm_launcher.hpp>

#include "arguments.hpp"
#include "detach.hpp"
#include "input.hpp"
#include "joblog.hpp"
#include "logs.hpp"
#include "output.hpp"
#include "render.hpp"
#include "shell_words.hpp"

namespace jobwarden_cli {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- help ---------------------------------------------------------------------

const char* const main_help = R"(jobwarden - run and supervise jobs of subprocess workers

usage:
  jobwarden run    --root DIR --job ID [options] -- CMD [ARG...]
  jobwarden run    --root DIR --job ID [options] --commands FILE|-
  jobwarden status --root DIR --job ID [--json | --format F] [--watch]
  jobwarden list   --root DIR [--json]
  jobwarden logs   --root DIR --job ID [--worker W] [--stderr] [--follow]
  jobwarden stop   --root DIR --job ID [--grace DUR] [--wait DUR]
  jobwarden signal --root DIR --job ID [--worker W] [--leader] SIG
  jobwarden pause  --root DIR --job ID [--worker W]
  jobwarden resume --root DIR --job ID [--worker W]
  jobwarden clean  --root DIR --older-than DUR [--dry-run] [--json] [--verbose]
  jobwarden report [--state S] [--done N --total M] [--progress JSON]
                   [--message TEXT] [--result JSON] [--error TEXT]
  jobwarden --version

'jobwarden COMMAND --help' describes a command. Durations (DUR) are 500ms,
30s, 5m, 1h or plain seconds. Job ids match [A-Za-z0-9][A-Za-z0-9._-]{0,127}.

exit status: 0 success; 1 the job ran and a worker did not succeed (or the
command could not do its work); 2 usage or input error (one line on stderr,
nothing written).
)";

const char* const run_help = R"(usage: jobwarden run --root DIR --job ID [options] -- CMD [ARG...]
       jobwarden run --root DIR --job ID [options] --commands FILE|-

Runs a job and returns when every worker has ended. With '-- CMD [ARG...]' the
job has one worker, id "1", running CMD with its arguments as given (no shell).
With '--commands FILE' it has one worker per line of FILE that is neither blank
nor a '#' comment, each run as said below, with ids "1", "2"... in file
order ('--commands -' reads the lines from this tool's stdin). The job's
records go to DIR/ID/journal.jsonl; each worker's output to
DIR/ID/workers/<id>.stdout.log and <id>.stderr.log, created only once the
worker writes something ('jobwarden logs' prints them).

A --commands line that is one simple command -- words, 'single' and "double"
quotes, backslash escapes, leading NAME=value words (set in that worker's
environment), an optional 'exec' -- runs without a shell, split as the shell
would split it: a crash reads crashed with its signal, a program that cannot
start spawn_failed with the reason. Any other line runs through /bin/sh -c:
a line with an unquoted $ ` ; & | < > ( ) { } * ? [ ~ or !, a $ or ` in
double quotes, a comment, a first word that is a reserved word or a shell
builtin (if, for, cd, export, set, ., eval, echo, test...), or a program
that is an executable without a #! line. In a local run, when such a line's
last command (after its last ;, && or ||, or the whole line) is a program
named by a plain word, with arguments that may use $VAR, globs and
redirections, the shell execs that program through this tool (the recorded
argv reads "... exec '/path/to/jobwarden' __exec-tail -- PROGRAM ..."): its
crash and a failed start read as above. Any other line -- a pipeline, a
background job, ( ), $( ), a builtin or $VAR as the last program, trap,
eval, ., set -- and a line ended early by an earlier command ends as its
shell reports it: a crash reads failed, exit 139; a program not found
failed, exit 127. The worker's recorded argv shows which way a line ran.

With --detach, run returns as soon as the job is open: its supervisor runs on
in a session of its own (stdin /dev/null), and run prints the job directory
(one line; with --json, {"job_id", "job_dir", "pid"}) and exits 0. What run
would print on stderr (warnings, errors, the verdict) goes to
DIR/ID/supervisor.log, and the exit status it would have exited with is
recorded in the job ('jobwarden status --json': supervisor.exit_status). A
job that cannot be started is reported by run itself, with the exit status
it would have without --detach. --detach cannot go with --input - or
--progress; --commands - is read before run detaches.

options:
  --root DIR            directory holding the job directories (required)
  --job ID              the job's id (required)
  --commands FILE       one command per line (instead of -- CMD); '-' reads
                        them from this tool's stdin (not with --input -)
  --named               each --commands line is ID<TAB>COMMAND: the worker's
                        id instead of its line's number (ids match
                        [A-Za-z0-9][A-Za-z0-9._-]{0,127}, each used once)
  --labeled             each --commands line is ID<TAB>LABEL<TAB>COMMAND: as
                        --named, plus a label (free text up to 1024 bytes,
                        empty for none) shown by status and in its JSON
  --label TEXT          the label of the worker of -- CMD
  --jobs N              run at most N workers at once (default: CPU count)
  --slots NAME:N        also share N slots with every run on this machine
                        (of this user) naming NAME: a worker starts only
                        holding one (see below)
  --timeout DUR         stop a worker that runs longer (timed_out)
  --warn SIG@DUR        send SIG to each worker DUR before its --timeout, once
                        per attempt, if it still runs then (USR1@10s: time
                        to save partial results before the stop signal)
  --grace DUR           time between the stop signal and SIGKILL (default 10s)
  --stop-signal SIG     signal that begins a stop (default SIGTERM)
  --stall DUR           stop a worker whose last report is older (stalled)
  --restart POLICY      never (default), on-failure or always
  --max-restarts N      most restarts per worker (default 3)
  --halt soon,fail=N    fail fast: after N workers did not succeed, start no
                        more workers and let the running ones finish;
  --halt now,fail=N     ...or also stop the running ones (stop signal, grace
                        period, SIGKILL). N may be a percentage of the job's
                        workers (fail=10%). Queued workers end cancelled.
  --nice N              each worker (and all it starts) runs at nice value N,
                        -20 to 19 (19: yields the CPU to everything else); a
                        value below this tool's own needs privilege, else the
                        worker ends spawn_failed
  --cpu-weight W        each worker's cgroup gets cpu.weight W, 1 to 10000
                        (default 100): its tree's CPU share against the other
                        workers of its run (at 10 it gets a tenth of what one
                        at 100 gets while both want more than there is).
                        Needs cgroups and the cpu controller (cgroup v2);
                        where they are missing the workers run unweighted and
                        run warns once on stderr
  --env K=V             set a variable in every worker (repeatable)
  --cwd DIR             workers' working directory
  --input FILE          every worker's stdin is FILE (default: /dev/null);
                        '-' is this tool's own stdin (one worker only)
  --replace             reuse the id of a finished job, replacing its records
  --resume              run a finished job again: its workers that succeeded
                        with the same command are kept, not run; every other
                        worker runs again as its next attempt (see below)
  --detach              return once the job is open; the supervisor runs on
                        in its own session (see above)
  --json                print the job's final status as JSON on stdout (with
                        --detach: {"job_id", "job_dir", "pid"} at once)
  --progress            show live progress even when not on a terminal
  --quiet               show nothing, even on a terminal
  --no-orphan-guard     do not start the guard process that kills the workers
                        if this process dies (then 'jobwarden stop' recovers)
  --no-cgroups          do not put workers in cgroups of their own
  --launcher L          local (default) or slurm: each worker one Slurm job
                        through srun (status, logs, stop, list and clean work
                        unchanged); then also:
  --slurm-partition P   srun --partition
  --slurm-account A     srun --account
  --slurm-mem SIZE      srun --mem (512M, 4G)
  --slurm-cpus N        srun --cpus-per-task
  --slurm-arg OPT       one more srun option as one word (repeatable),
                        e.g. --slurm-arg=--qos=short

--resume keeps the job's records: a worker (ids are line numbers with
--commands) whose record says succeeded with the same command is kept as it
was; a failed, crashed, timed out, cancelled or lost one, or one whose command
changed, runs again (its logs are appended to). The command compared is the
recorded argv: a shell's line as that line (however this tool ran it), a line
run without a shell by its words (its leading NAME=value words, like --env
and --cwd, are not compared). Workers of the earlier run that are not given
this time keep their records and count toward the outcome. A job whose
supervisor died is recovered first; a job that does not exist yet simply
runs. Not with --replace.

--slots NAME:N bounds many runs together: every run on this machine naming
NAME (by this user) shares N slots, on top of each run's own --jobs (three
runs with --jobs 5 --slots scans:5 run 5 workers at once in all, not 15). A
worker holds its slot from its start to its exit, as an flock on the file
NAME.slot.<i> (i < N) in $JOBWARDEN_SLOTS_DIR, else
$XDG_RUNTIME_DIR/jobwarden/slots, else /tmp/jobwarden-slots-<uid> (made
mode 0700): a run that dies, even by SIGKILL, holds none. Waiting workers
stay pending; a run waiting looks for a free slot at once when one of its
own frees, else every 100ms, and lets a run that has waited longer go first
(about first come, first served, not exactly). NAME is letters, digits,
'.', '_' and '-' (not starting with '.', at most 100); runs naming one NAME
should give the same N (each keeps to the first N files).

On a terminal, live progress is shown (at most 5 redraws a second). SIGINT,
SIGTERM or SIGHUP stops every worker (stop signal, grace period, SIGKILL) and
the final status is still written.

With --halt, a worker "did not succeed" when it ends failed, crashed,
timed_out, stalled, spawn_failed or lost for good: an attempt that --restart
starts again does not count until the worker gives up, and cancelled workers
(the halt's own included) never count. fail=P% halts once the failures are at
least P% of the job's workers (fail=10% of 25 workers: at the third). After
the halt nothing is restarted, the job ends failed and its journal's job line
says why ("halted").

exit status: 0 every worker succeeded (with --resume: the kept ones too; with
--detach: the job is open); 1 a worker ended otherwise (failed, crashed,
timed_out, stalled, cancelled, spawn_failed, lost; always when the job
halted), or the job could not be started; 2 usage or input error, or the job
already has a live supervisor, or --resume of a job that cannot be resumed
(nothing written).
)";

const char* const status_help = R"(usage: jobwarden status --root DIR --job ID [--json | --format F] [--watch]

Shows a job's status as any reader sees it: its state, counts, and each
worker's state, progress, outcome or message, with stale workers flagged and
unreadable status files listed. A job's state is pending (workers submitted,
none started), running, idle (a live supervisor with nothing to do now: only
finished workers, or none), or final: succeeded, failed, cancelled, lost.
Workers a long-lived supervisor forgot are still shown: their records stay.
--watch keeps going while a job is idle: it is not over.

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --json        print the aggregated status as one JSON object
  --format F    table (the default), json (the same as --json) or tsv: a job
                log for sort/awk, one tab-separated line per worker after a
                header line; columns
                  id attempt start runtime exit signal state label command
                (start in RFC 3339 UTC, runtime in seconds, command as shell
                words, '-' for a value that is not there; inside a field a
                backslash, tab, newline or CR is written \\ \t \n \r, other
                control bytes \xHH, and a field that is '-' itself \-).
                Not with --watch: a job log is printed once.
  --watch       redraw until the job ends (on a terminal: in place; otherwise
                a new snapshot, after a blank line, whenever it changes, at
                most once a second; with --json, one object per line)

exit status: 0 shown; 2 usage error or no such job.
)";

const char* const list_help = R"(usage: jobwarden list --root DIR [--json]

Lists the jobs under DIR, oldest first, with their state (pending, running,
idle, succeeded, failed, cancelled, lost; see 'jobwarden status --help'),
worker counts, and when they were created and ended.

options:
  --root DIR    directory holding the job directories (required)
  --json        print {"schema_version": 1, "jobs": [...], "errors": [...]}
)";

const char* const signal_help = R"(usage: jobwarden signal --root DIR --job ID [--worker W] [--leader] [--wait DUR] SIG

Sends signal SIG (USR1, SIGHUP, 10...) to a running worker of a job with a
live supervisor -- its whole tree (every process of its cgroup, or its process
group), or with --leader only the process jobwarden started -- or, without
--worker, to every running worker. The supervisor sends it, and only to
workers it still holds: never to a pid that may belong to another process by
now. The request goes through the job directory (no server): the supervisor
answers within moments, or at its next heartbeat where inotify is missing.

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --worker W    the worker (default: every running worker)
  --leader      only the worker's own process, not its children
  --wait DUR    how long to wait for the supervisor's answer (default 10s)

exit status: 0 sent; 1 the job has no live supervisor, the worker is not
running (pending or ended), or no worker was running; 2 usage or input error
(unknown job or worker, a bad signal).
)";

const char* const pause_help = R"(usage: jobwarden pause --root DIR --job ID [--worker W] [--wait DUR]

Pauses a running worker of a job with a live supervisor (or, without
--worker, every running worker): its cgroup is frozen where it has one (every
process of it, escaped ones included, and nothing inside can undo it), else
its process group gets SIGSTOP. While paused its timeout and stall clocks
stop; it reads running with "paused": true. 'jobwarden resume' continues it;
stopping a paused worker thaws it first, so it sees its stop signal.

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --worker W    the worker (default: every running worker)
  --wait DUR    how long to wait for the supervisor's answer (default 10s)

exit status as for 'jobwarden signal'.
)";

const char* const resume_help = R"(usage: jobwarden resume --root DIR --job ID [--worker W] [--wait DUR]

Resumes a worker paused by 'jobwarden pause' (or, without --worker, every
paused worker): its cgroup is thawed, or its process group gets SIGCONT, and
its timeout and stall clocks run on from where they stopped. (Not to be
confused with 'jobwarden run --resume', which reruns a finished job's workers
that did not succeed.)

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --worker W    the worker (default: every running worker)
  --wait DUR    how long to wait for the supervisor's answer (default 10s)

exit status as for 'jobwarden signal'.
)";

const char* const stop_help = R"(usage: jobwarden stop --root DIR --job ID [--grace DUR] [--wait DUR]

Stops a job. With a live supervisor, asks it to stop every worker (stop
signal, grace period, SIGKILL; they end cancelled) and waits until it has.
Where the supervisor is gone, stops what is left of its workers itself -- only
processes proven by pid and start time to be the recorded ones -- and marks
them and the job lost.

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --grace DUR   grace period replacing the workers' own (default: theirs;
                10s when recovering)
  --wait DUR    how long to wait for a live supervisor to finish stopping
                (default: the grace period plus 30s, at least 60s)

A job that ends by itself before its supervisor acts on the request is
reported as such ("finished on its own ... no worker was stopped"). A job
directory that no supervisor ever recorded (no journal.jsonl, its start was
interrupted) reads lost; nothing of it is signalled. A job directory of an
older jobwarden (job.json, a directory per worker) is not read: stop it with
that version.

exit status: 0 the job is stopped or had already finished; 1 it could not be
stopped (in time); 2 usage error or no such job.
)";

const char* const clean_help = R"(usage: jobwarden clean --root DIR --older-than DUR [--dry-run] [--json] [--verbose]

Removes the directories of finished jobs that ended more than DUR ago. Never
removes a job with a live supervisor or a worker still running. Prints each
removed job id (with --dry-run: each that would be removed). A job directory of
an older jobwarden (job.json, a directory per worker), which no other command
reads, is removed once nobody holds its lock and it was last changed more than
DUR ago.

options:
  --root DIR          directory holding the job directories (required)
  --older-than DUR    minimum age since the job ended (required)
  --dry-run           remove nothing; print what would be removed
  --json              print {"dry_run", "removed", "kept", "errors"} instead
  --verbose           also print each job kept, and why
)";

const char* const report_help = R"(usage: jobwarden report [--state S] [--done N --total M] [--progress JSON]
                        [--message TEXT] [--result JSON] [--error TEXT]

For workers written as scripts: updates this worker's status file
($JOBWARDEN_STATUS_FILE) atomically. Fields not given keep their earlier
values; with no option at all, only the heartbeat is renewed.

options:
  --state S         running, succeeded, failed... (a terminal state is final)
  --done N          progress {"done": N, "total": M} (needs --total)
  --total M
  --progress JSON   any progress value, as JSON (instead of --done/--total)
  --message TEXT    a human-readable message
  --result JSON     the worker's result, as JSON
  --error TEXT      why the worker is failing

exit status: 0 written; 1 the write failed; 2 usage error, invalid JSON, or
not running inside a jobwarden worker.
)";

// ---- shared option checks --------------------------------------------------------

const OptionSpec root_option{"root", true};
const OptionSpec job_option{"job", true};

/// The value of `--root`, which must be given and non-empty.
std::string root_of(const Arguments& args) {
  std::string root = args.required("root");
  if (root.empty()) throw UsageError("--root: empty path");
  return root;
}

/// The value of `--job`, which must be a valid id.
std::string job_of(const Arguments& args) {
  std::string job = args.required("job");
  if (!jobwarden::is_valid_id(job)) {
    throw UsageError(fmt::format("--job: invalid job id {}: it must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}",
                                 printable("\"" + job.substr(0, 160) + "\"")));
  }
  return job;
}

/// Parses duration option `--name` if given.
std::optional<milliseconds> duration_option(const Arguments& args, const std::string& name) {
  auto text = args.value(name);
  if (!text) return std::nullopt;
  std::error_code ec;
  milliseconds value = jobwarden::parse_duration(*text, ec);
  if (ec) {
    throw UsageError(fmt::format("--{}: invalid duration {} (expected e.g. 500ms, 30s, 5m, 1h or plain seconds)", name,
                                 printable("\"" + *text + "\"")));
  }
  return value;
}

/// Parses option `--name`'s whole number (an optional sign, digits, nothing
/// else) in `min`..`max`, or throws a `UsageError` naming the option.
int ranged_option(const std::string& text, const std::string& name, int min, int max) {
  const std::size_t digits = text.empty() || (text[0] != '-' && text[0] != '+') ? 0 : 1;
  long long value = 0;
  const bool number = text.size() > digits && text.size() - digits <= 9 &&
                      text.find_first_not_of("0123456789", digits) == std::string::npos;
  if (number) value = std::stoll(text);
  if (!number || value < min || value > max) {
    throw UsageError(fmt::format("--{}: {} is not a whole number from {} to {}", name,
                                 printable("\"" + text + "\""), min, max));
  }
  return static_cast<int>(value);
}

/// Parses `--warn SIG@DUR` (`USR1@10s`): signal SIG to each worker DUR
/// before its timeout, which must be given (`timeout`) and longer than DUR;
/// SIG must not be the stop signal (`stop_signal`).
jobwarden::DeadlineWarning warning_option(const std::string& text, milliseconds timeout, int stop_signal) {
  const std::size_t at = text.find('@');
  if (at == std::string::npos) {
    throw UsageError(fmt::format("--warn: expected SIG@DUR (e.g. USR1@10s), not {}",
                                 printable("\"" + text.substr(0, 160) + "\"")));
  }
  jobwarden::DeadlineWarning warning;
  const std::string signal_text = text.substr(0, at), before_text = text.substr(at + 1);
  auto signal_number = jobwarden::signal_from_string(signal_text);
  if (!signal_number) throw UsageError("--warn: unknown signal " + printable("\"" + signal_text.substr(0, 160) + "\""));
  if (*signal_number == SIGKILL || *signal_number == SIGSTOP) {
    throw UsageError("--warn: " + jobwarden::signal_name(*signal_number) + " cannot be caught: a warning must be a signal the worker can handle");
  }
  if (*signal_number == stop_signal) {
    throw UsageError("--warn: " + jobwarden::signal_name(*signal_number) +
                     " is the stop signal (--stop-signal): a warning needs another signal");
  }
  warning.signal = *signal_number;
  std::error_code ec;
  warning.before = jobwarden::parse_duration(before_text, ec);
  if (ec) {
    throw UsageError(fmt::format("--warn: invalid duration {} (expected e.g. 500ms, 30s, 5m, 1h or plain seconds)",
                                 printable("\"" + before_text.substr(0, 160) + "\"")));
  }
  if (timeout.count() <= 0) throw UsageError("--warn needs --timeout: the warning comes that long before it");
  if (warning.before.count() <= 0 || warning.before >= timeout) {
    throw UsageError(fmt::format("--warn: {} must be more than 0 and less than --timeout ({})",
                                 printable(before_text.substr(0, 160)), jobwarden::format_duration(timeout)));
  }
  return warning;
}

/// An error reading job `job` under `root`, as the one line a user needs.
std::string describe_job_error(const std::error_code& ec, const std::string& root, const std::string& job) {
  if (ec == jobwarden::errc::unknown_job) return fmt::format("no job \"{}\" under {}", job, root);
  if (ec == std::errc::too_many_symbolic_link_levels) {
    return fmt::format("job directory {}/{} is a symbolic link; not followed", root, job);
  }
  return fmt::format("cannot read job \"{}\" under {}: {}", job, root, ec.message());
}

/// Whether a worker state counts as success for `run`'s exit status.
bool all_succeeded(const std::vector<jobwarden::WorkerInfo>& workers) {
  for (const auto& worker : workers) {
    if (worker.state != jobwarden::WorkerState::succeeded) return false;
  }
  return !workers.empty();
}

// ---- signals ----------------------------------------------------------------------

/// SIGINT, SIGTERM and SIGHUP become bytes on a pipe that `run` polls together
/// with the supervisor's descriptor: the handler does nothing but write().
int signal_pipe_write_end = -1;

extern "C" void forward_signal(int signal_number) {
  const int saved_errno = errno;
  const auto byte = static_cast<unsigned char>(signal_number);
  (void)!::write(signal_pipe_write_end, &byte, 1);
  errno = saved_errno;
}

/// Installs the forwarding handlers; returns the pipe's read end.
int install_stop_signal_handlers() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::system_category(), "cannot create the signal pipe");
  }
  signal_pipe_write_end = fds[1];
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal_number : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal_number, &action, nullptr);
  return fds[0];
}

/// Reads every pending byte of the signal pipe; returns the last signal, or 0.
int drain_signals(int read_end) {
  int last = 0;
  unsigned char buffer[64];
  for (;;) {
    const ssize_t n = ::read(read_end, buffer, sizeof buffer);
    if (n > 0) {
      last = buffer[n - 1];
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return last;
  }
}

// ---- run --------------------------------------------------------------------------

/// Everything `run` will do, decided and checked before anything touches the disk.
struct RunPlan {
  jobwarden::SupervisorOptions supervisor;
  std::vector<jobwarden::WorkerSpec> workers;
  bool json = false;
  bool force_progress = false;
  bool quiet = false;
  bool detach = false;  ///< --detach: the supervisor runs on in its own session
  /// With --commands: the line of each worker (`lines[i]` is `workers[i]`'s).
  std::vector<std::string> lines;
};

/// The commands of a `--commands` file: non-blank lines that are not `#`
/// comments (and, in `line_numbers` when given, the number of each one's line
/// in the file). `-` reads them from this tool's stdin, to its end.
std::vector<std::string> read_commands_file(const std::string& path,
                                            std::vector<std::size_t>* line_numbers = nullptr) {
  std::string content;
  const bool from_stdin = path == "-";
  const std::string name = from_stdin ? "stdin" : path;
  {
    const int fd = from_stdin ? ::dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw UsageError(fmt::format("--commands: cannot read {}: {}", name, std::strerror(errno)));
    char buffer[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n > 0) {
        content.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const int error = n < 0 ? errno : 0;
      ::close(fd);
      if (error != 0) throw UsageError(fmt::format("--commands: cannot read {}: {}", name, std::strerror(error)));
      break;
    }
  }
  std::vector<std::string> commands;
  std::size_t start = 0;
  std::size_t line_number = 0;
  while (start <= content.size()) {
    ++line_number;
    std::size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] != '#') {
      if (line.find('\0') != std::string::npos) {
        throw UsageError(fmt::format("--commands: {} line {} contains a NUL byte", name, commands.size() + 1));
      }
      commands.push_back(line);
      if (line_numbers != nullptr) line_numbers->push_back(line_number);
    }
    start = end + 1;
  }
  if (commands.empty()) {
    throw UsageError(fmt::format("--commands: no commands in {} (only blank lines and # comments)", name));
  }
  return commands;
}

/// `--detach` and `--commands -`: what they cannot go with. Checked before
/// `--commands -` reads stdin (which happens before anything is detached).
void check_detach_options(const Arguments& args, RunPlan& plan) {
  const bool stdin_input = args.value("input") == std::optional<std::string>("-");
  if (args.value("commands") == std::optional<std::string>("-") && stdin_input) {
    throw UsageError("--commands - and --input - both read this tool's stdin: give one of them a file");
  }
  plan.detach = args.has("detach");
  if (!plan.detach) return;
  if (stdin_input) throw UsageError("--input -: a detached run's stdin is /dev/null; give --input a file");
  if (plan.force_progress) {
    throw UsageError("--progress: a detached run shows no progress; follow it with 'jobwarden status --watch'");
  }
}

/// The launcher of `--launcher local|slurm` and the `--slurm-*` options:
/// null for local (the supervisor's default), a `SlurmLauncher` for slurm.
std::shared_ptr<jobwarden::Launcher> launcher_option(const Arguments& args) {
  const std::string kind = args.value("launcher").value_or("local");
  static const char* const slurm_options[] = {"slurm-arg", "slurm-partition", "slurm-account", "slurm-mem",
                                              "slurm-cpus"};
  if (kind == "local") {
    for (const char* name : slurm_options) {
      if (args.has(name)) throw UsageError(fmt::format("--{} needs --launcher slurm", name));
    }
    return nullptr;
  }
  if (kind != "slurm") {
    throw UsageError("--launcher: expected local or slurm, not " + printable("\"" + kind + "\""));
  }
  jobwarden::SlurmOptions slurm;
  slurm.orphan_guard = !args.has("no-orphan-guard");  // the launcher's own guard (it cancels the jobs)
  auto word = [&](const char* name) -> std::string {
    auto value = args.value(name);
    if (!value) return {};
    if (value->empty() || value->find_first_of(" \t\n\r") != std::string::npos) {
      throw UsageError(fmt::format("--{}: expected one word, not {}", name, printable("\"" + *value + "\"")));
    }
    return *value;
  };
  slurm.partition = word("slurm-partition");
  slurm.account = word("slurm-account");
  slurm.memory = word("slurm-mem");
  if (!slurm.memory.empty()) {
    const std::size_t digits = slurm.memory.find_first_not_of("0123456789");
    const bool valid = digits != 0 && (digits == std::string::npos ||
                                       (digits + 1 == slurm.memory.size() &&
                                        std::string("KMGTkmgt").find(slurm.memory[digits]) != std::string::npos));
    if (!valid) {
      throw UsageError(fmt::format("--slurm-mem: expected a size such as 512M or 4G, not {}",
                                   printable("\"" + slurm.memory + "\"")));
    }
  }
  if (auto cpus = args.value("slurm-cpus")) {
    slurm.cpus_per_task = static_cast<int>(parse_count(*cpus, "slurm-cpus", 1'000'000));
    if (slurm.cpus_per_task == 0) throw UsageError("--slurm-cpus: must be at least 1");
  }
  for (const std::string& extra : args.values("slurm-arg")) {
    // One srun option per --slurm-arg, as one word: a bare word would become
    // srun's program, and "--" would end srun's options early.
    if (extra.size() < 2 || extra[0] != '-' || extra == "--") {
      throw UsageError(fmt::format("--slurm-arg: expected one srun option written as one word (--qos=short), not {}",
                                   printable("\"" + extra + "\"")));
    }
    slurm.extra_args.push_back(extra);
  }
  const char* path = std::getenv("PATH");
  if (find_program(slurm.srun_program, path ? path : "", "").empty()) {
    throw UsageError("--launcher slurm: no srun in PATH (is the Slurm client installed?)");
  }
  return std::make_shared<jobwarden::SlurmLauncher>(std::move(slurm));
}

// ---- --commands lines: with a shell only where needed ------------------------------

/// The hidden mode of this binary that a shell's line ends in (see
/// `spec_for_line`): `jobwarden __exec-tail -- PROGRAM [ARG...]` execs
/// PROGRAM as execvp does; if that fails, it writes why to the file named by
/// $JOBWARDEN_EXEC_REPORT, which the supervisor's launcher reads
/// (`ExecReportLauncher`), and exits 127 (126 if found but not runnable),
/// as a shell would.
constexpr const char* exec_tail_mode = "__exec-tail";
constexpr const char* exec_report_env = "JOBWARDEN_EXEC_REPORT";

int exec_tail(int argc, char** argv) {
  std::string report;
  if (const char* value = std::getenv(exec_report_env)) report = value;
  ::unsetenv(exec_report_env);  // the program never sees it
  if (argc < 4 || std::strcmp(argv[2], "--") != 0) {
    print(stderr, "jobwarden {}: usage: jobwarden {} -- PROGRAM [ARG...]\n", exec_tail_mode, exec_tail_mode);
    return 2;
  }
  ::execvp(argv[3], argv + 3);
  const int error = errno;
  const std::string message = fmt::format("cannot run \"{}\": {}", argv[3], std::strerror(error));
  print(stderr, "jobwarden: {}\n", message);
  if (!report.empty()) {
    const int fd = ::open(report.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      (void)!::write(fd, message.data(), message.size());
      ::close(fd);
    }
  }
  return error == ENOENT ? 127 : 126;
}

/// The local launcher, plus what turns a `__exec-tail` that could not exec
/// its program into `spawn_failed` with the reason: each attempt of a worker
/// whose spec names $JOBWARDEN_EXEC_REPORT gets the name of a file of its
/// own in $TMPDIR (a random token makes it unguessable), which the helper
/// creates only if the exec failed, and which is read and removed once the
/// worker is reaped. Nothing is created for a worker whose program started.
class ExecReportLauncher : public jobwarden::LocalLauncher {
 public:
  ExecReportLauncher() {
    std::random_device random;
    token_ = fmt::format("{:08x}{:08x}", random(), random());
    std::error_code ec;
    dir_ = std::filesystem::temp_directory_path(ec).string();
    if (ec || dir_.empty()) dir_ = "/tmp";
    // Absolute: the helper writes from wherever the worker's shell is (--cwd, a cd).
    if (dir_.front() != '/') {
      const std::string absolute = std::filesystem::absolute(dir_, ec).string();
      dir_ = ec || absolute.empty() ? std::string("/tmp") : absolute;
    }
  }

  std::error_code prepare(jobwarden::LaunchPlan& plan, const jobwarden::WorkerSpec& spec,
                          const jobwarden::LaunchContext& context, std::string& error) override {
    if (auto ec = LocalLauncher::prepare(plan, spec, context, error)) return ec;
    const std::string prefix = std::string(exec_report_env) + "=";
    for (auto& entry : plan.env) {
      if (entry.rfind(prefix, 0) == 0) entry = prefix + report_path(context);
    }
    return {};
  }

  std::optional<jobwarden::WorkerState> interpret_exit(jobwarden::WorkerInfo& worker, jobwarden::ExitStatus& status,
                                                       const jobwarden::LaunchContext& context) override {
    const std::string path = report_path(context);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return std::nullopt;
    std::string text;
    struct stat info {};
    if (::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_uid == ::geteuid()) {
      char buffer[4096];
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n > 0) text.assign(buffer, static_cast<std::size_t>(n));
      ::unlink(path.c_str());
    }
    ::close(fd);
    if (text.empty() || !status.exit_code || (*status.exit_code != 126 && *status.exit_code != 127)) {
      return std::nullopt;
    }
    if (worker.error.empty()) worker.error = text;
    status.exit_code.reset();  // it never ran: spawn_failed is never an exit code
    return jobwarden::WorkerState::spawn_failed;
  }

 private:
  std::string report_path(const jobwarden::LaunchContext& context) const {
    return dir_ + "/jobwarden-exec-" + token_ + "-" + context.worker_id + "-" + std::to_string(context.attempt);
  }

  std::string dir_;
  std::string token_;
};

/// This binary, for `exec` from a worker's shell: its path if it can be
/// found and run, else empty.
std::string own_binary(const char* argv0) {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  std::string path;
  if (n > 0) {
    path.assign(buffer, static_cast<std::size_t>(n));
  } else if (argv0 != nullptr) {
    const char* env_path = std::getenv("PATH");
    path = find_program(argv0, env_path ? env_path : "", "");
    if (!path.empty() && path[0] != '/') {
      char cwd[4096];
      if (::getcwd(cwd, sizeof cwd) != nullptr) path = std::string(cwd) + "/" + path;
    }
  }
  if (path.empty() || path[0] != '/' || ::access(path.c_str(), X_OK) != 0) return {};
  return path;
}

const char* own_argv0 = nullptr;  // set by main

/// `text` as one word of /bin/sh, in single quotes.
std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// The worker for one line of a `--commands` file, on the options in `base`.
/// A line that is one simple command (shell_words.hpp) runs without a shell:
/// argv is its words, its leading NAME=value words join the environment, so
/// a crash reads crashed with its signal and a program that cannot start
/// spawn_failed with the reason. Any other line runs as /bin/sh -c LINE.
/// With `exec_helper` (this binary; empty: not available, or not a local
/// run), a line whose last command can be exec'd (`find_last_command`) gets
/// `exec HELPER __exec-tail --` before that command's program: the program
/// then is the worker's process, so its crash is the worker's, and a
/// failed exec is reported by the helper (`ExecReportLauncher`). Any other
/// line ends as its shell reports it. The worker's recorded argv says which
/// way it ran.
jobwarden::WorkerSpec spec_for_line(const std::string& line, const jobwarden::WorkerSpec& base,
                                    const std::string& exec_helper) {
  jobwarden::WorkerSpec spec = base;
  ShellWords words = split_simple_command(line);
  if (words.command) {
    // The PATH the worker's program is looked up in: the line's, --env's, ours.
    std::string path_env;
    if (const char* own = std::getenv("PATH")) path_env = own;
    if (auto it = base.env.find("PATH"); it != base.env.end()) path_env = it->second;
    for (const auto& [name, value] : words.command->assignments) {
      if (name == "PATH") path_env = value;
    }
    if (execve_runs_as_is(words.command->argv.front(), path_env, base.cwd)) {
      for (auto& [name, value] : words.command->assignments) spec.env[name] = std::move(value);
      spec.argv = std::move(words.command->argv);
      return spec;
    }
  }
  spec.argv = {"/bin/sh", "-c", line};
  if (exec_helper.empty()) return spec;
  const auto last = find_last_command(line);
  if (!last) return spec;
  spec.argv[2] = line.substr(0, last->insert_at) + "exec " + shell_quote(exec_helper) + " " + exec_tail_mode +
                 " -- " + line.substr(last->program_at);
  spec.env[exec_report_env] = "";  // its file is named by the launcher, per attempt
  return spec;
}

/// Whether `argv` is how `line` runs through /bin/sh: as it is, or with the
/// `exec HELPER __exec-tail --` of `spec_for_line` before its last program,
/// whatever the helper's path (the tool moved, or ran without the helper).
bool runs_line_through_shell(const std::vector<std::string>& argv, const std::string& line) {
  if (argv.size() != 3 || argv[0] != "/bin/sh" || argv[1] != "-c") return false;
  const std::string& text = argv[2];
  if (text == line) return true;
  const auto last = find_last_command(line);
  if (!last) return false;
  const std::string head = line.substr(0, last->insert_at) + "exec '";
  const std::string tail = std::string("' ") + exec_tail_mode + " -- " + line.substr(last->program_at);
  return text.size() > head.size() + tail.size() && text.compare(0, head.size(), head) == 0 &&
         text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

/// --resume with --commands: a worker whose earlier record succeeded running
/// the same line through the shell in another way (through this tool at
/// another path, or without it) takes that record's argv, so the
/// supervisor, which compares argv, keeps it.
void match_earlier_lines(const std::vector<jobwarden::WorkerInfo>& earlier, RunPlan& plan) {
  std::unordered_map<std::string, const jobwarden::WorkerInfo*> succeeded;
  for (const auto& worker : earlier) {
    if (worker.state == jobwarden::WorkerState::succeeded) succeeded.emplace(worker.id, &worker);
  }
  for (std::size_t i = 0; i < plan.lines.size() && i < plan.workers.size(); ++i) {
    jobwarden::WorkerSpec& spec = plan.workers[i];
    const auto found = succeeded.find(spec.id);
    if (found == succeeded.end() || found->second->argv == spec.argv) continue;
    const std::string& line = plan.lines[i];
    if (runs_line_through_shell(spec.argv, line) && runs_line_through_shell(found->second->argv, line)) {
      spec.argv = found->second->argv;
    }
  }
}

/// How `--commands` lines name their workers: not at all (ids "1", "2"...),
/// `ID<TAB>COMMAND` (`--named`) or `ID<TAB>LABEL<TAB>COMMAND` (`--labeled`).
enum class CommandNaming { numbered, named, labeled };

/// A worker's id and label as its `--commands` line gives them.
struct WorkerName {
  std::string id;
  std::string label;
};

/// A label given on the command line or in a `--commands` line, checked as
/// the library will (`where` names it in the error).
void check_label(const std::string& label, const std::string& where) {
  if (label.size() > jobwarden::max_label_bytes) {
    throw UsageError(fmt::format("{}: label is {} bytes long, more than the {} allowed", where, label.size(),
                                 jobwarden::max_label_bytes));
  }
  if (!jobwarden::detail::is_valid_utf8(label)) throw UsageError(where + ": label is not valid UTF-8");
}

/// The name of each of `commands` (the lines of `path`, at `line_numbers`):
/// numbered "1", "2"... in order, or split off the line, leaving only the
/// command in it. Every id must be valid and used once, every command
/// non-blank.
std::vector<WorkerName> split_worker_names(std::vector<std::string>& commands,
                                           const std::vector<std::size_t>& line_numbers, CommandNaming naming,
                                           const std::string& path) {
  std::vector<WorkerName> names;
  names.reserve(commands.size());
  if (naming == CommandNaming::numbered) {
    for (std::size_t i = 0; i < commands.size(); ++i) names.push_back({std::to_string(i + 1), {}});
    return names;
  }
  const char* const shape = naming == CommandNaming::labeled ? "ID<TAB>LABEL<TAB>COMMAND (--labeled)"
                                                               : "ID<TAB>COMMAND (--named)";
  std::unordered_map<std::string, std::size_t> first_line;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    std::string& line = commands[i];
    const std::size_t number = i < line_numbers.size() ? line_numbers[i] : i + 1;
    const std::string where = fmt::format("--commands: {} line {}", path, number);
    WorkerName name;
    std::size_t tab = line.find('\t');
    if (tab == std::string::npos) throw UsageError(fmt::format("{}: expected {}", where, shape));
    name.id = line.substr(0, tab);
    std::size_t rest = tab + 1;
    if (naming == CommandNaming::labeled) {
      tab = line.find('\t', rest);
      if (tab == std::string::npos) throw UsageError(fmt::format("{}: expected {}", where, shape));
      name.label = line.substr(rest, tab - rest);
      rest = tab + 1;
    }
    if (!jobwarden::is_valid_id(name.id)) {
      throw UsageError(fmt::format("{}: invalid worker id {}: it must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}", where,
                                   printable("\"" + name.id + "\"")));
    }
    const auto [seen, fresh] = first_line.emplace(name.id, number);
    if (!fresh) {
      throw UsageError(fmt::format("{}: duplicate worker id \"{}\" (first on line {})", where, name.id, seen->second));
    }
    check_label(name.label, where);
    line.erase(0, rest);
    if (line.find_first_not_of(" \t") == std::string::npos) {
      throw UsageError(fmt::format("{}: no command after the worker id \"{}\"", where, name.id));
    }
    names.push_back(std::move(name));
  }
  return names;
}

/// `--slots NAME:N`: the N slots every run on this machine (of this user)
/// naming NAME shares (jobwarden::MachineSlots: lock files the kernel frees
/// when their holder dies). Checked whole before its directory is made.
std::shared_ptr<jobwarden::SharedSlots> slots_option(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    throw UsageError("--slots: expected NAME:N (e.g. scans:4), not " + printable("\"" + text + "\""));
  }
  const std::string name = text.substr(0, colon);
  const std::string problem = jobwarden::MachineSlots::check_name(name);
  if (!problem.empty()) throw UsageError("--slots: " + printable(problem));
  const auto count = static_cast<std::size_t>(parse_count(text.substr(colon + 1), "slots", jobwarden::SharedSlots::max_count));
  if (count == 0) throw UsageError("--slots: N must be at least 1");
  try {
    return std::make_shared<jobwarden::MachineSlots>(name, count);
  } catch (const std::system_error& e) {
    throw UsageError(printable(std::string("--slots: ") + e.what()));
  }
}

RunPlan plan_run(const Arguments& args) {
  RunPlan plan;
  plan.supervisor.root = root_of(args);
  plan.supervisor.job_id = job_of(args);
  plan.json = args.has("json");
  plan.force_progress = args.has("progress");
  plan.quiet = args.has("quiet");
  if (plan.force_progress && plan.quiet) throw UsageError("--progress and --quiet contradict each other");
  check_detach_options(args, plan);
  plan.supervisor.replace_finished_job = args.has("replace");
  plan.supervisor.resume_finished_job = args.has("resume");
  if (plan.supervisor.replace_finished_job && plan.supervisor.resume_finished_job) {
    throw UsageError("--resume and --replace exclude each other (--resume keeps the job's records, --replace drops them)");
  }
  plan.supervisor.orphan_guard = !args.has("no-orphan-guard");
  plan.supervisor.use_cgroups = !args.has("no-cgroups");

  struct stat info {};
  if (::stat(plan.supervisor.root.c_str(), &info) == 0 && !S_ISDIR(info.st_mode)) {
    throw UsageError("--root: " + plan.supervisor.root + " is not a directory");
  }
  if (auto jobs = args.value("jobs")) {
    plan.supervisor.max_concurrency = static_cast<std::size_t>(parse_count(*jobs, "jobs", 1'000'000));
    if (plan.supervisor.max_concurrency == 0) throw UsageError("--jobs: must be at least 1");
  }

  plan.supervisor.launcher = launcher_option(args);

  // One spec, copied for every worker.
  jobwarden::WorkerSpec base;
  if (auto timeout = duration_option(args, "timeout")) base.timeout = *timeout;
  if (auto grace = duration_option(args, "grace")) base.grace_period = *grace;
  if (auto stall = duration_option(args, "stall")) base.stall_timeout = *stall;
  if (auto text = args.value("stop-signal")) {
    auto signal_number = jobwarden::signal_from_string(*text);
    if (!signal_number) throw UsageError("--stop-signal: unknown signal " + printable("\"" + *text + "\""));
    base.stop_signal = *signal_number;
  }
  if (auto policy = args.value("restart")) {
    if (*policy == "never") base.restart.policy = jobwarden::RestartPolicy::never;
    else if (*policy == "on-failure" || *policy == "on_failure") base.restart.policy = jobwarden::RestartPolicy::on_failure;
    else if (*policy == "always") base.restart.policy = jobwarden::RestartPolicy::always;
    else throw UsageError("--restart: expected never, on-failure or always, not " + printable("\"" + *policy + "\""));
  }
  if (auto count = args.value("max-restarts")) {
    if (base.restart.policy == jobwarden::RestartPolicy::never) {
      throw UsageError("--max-restarts needs --restart on-failure or --restart always");
    }
    base.restart.max_restarts = static_cast<int>(parse_count(*count, "max-restarts", 1'000'000));
  }
  if (auto text = args.value("warn")) base.warning = warning_option(*text, base.timeout, base.stop_signal);
  if (auto text = args.value("nice")) base.nice = ranged_option(*text, "nice", jobwarden::min_nice, jobwarden::max_nice);
  if (auto text = args.value("cpu-weight")) {
    base.cpu_weight = ranged_option(*text, "cpu-weight", jobwarden::min_cpu_weight, jobwarden::max_cpu_weight);
  }
  if (auto text = args.value("halt")) {
    std::string error;
    auto policy = jobwarden::parse_halt(*text, error);
    if (!policy) throw UsageError("--halt: " + printable(error));
    plan.supervisor.halt = *policy;
  }
  for (const std::string& assignment : args.values("env")) {
    const std::size_t equals = assignment.find('=');
    if (equals == std::string::npos || equals == 0) {
      throw UsageError("--env: expected NAME=VALUE, not " + printable("\"" + assignment + "\""));
    }
    base.env[assignment.substr(0, equals)] = assignment.substr(equals + 1);
  }
  if (auto cwd = args.value("cwd")) {
    struct stat cwd_info {};
    if (::stat(cwd->c_str(), &cwd_info) != 0) {
      throw UsageError(fmt::format("--cwd: {}: {}", *cwd, std::strerror(errno)));
    }
    if (!S_ISDIR(cwd_info.st_mode)) throw UsageError("--cwd: " + *cwd + " is not a directory");
    base.cwd = *cwd;
  }

  const auto commands_file = args.value("commands");
  if (args.command_given() && commands_file) {
    throw UsageError("give either -- CMD [ARG...] or --commands FILE, not both");
  }
  const CommandNaming naming = args.has("labeled") ? CommandNaming::labeled
                                : args.has("named")  ? CommandNaming::named
                                                     : CommandNaming::numbered;
  if (naming != CommandNaming::numbered && !commands_file) {
    throw UsageError(fmt::format("--{} needs --commands FILE (it names the workers of its lines)",
                                 naming == CommandNaming::labeled ? "labeled" : "named"));
  }
  const auto label = args.value("label");
  if (label && !args.command_given()) {
    throw UsageError("--label names the one worker of -- CMD; with --commands, label lines with --labeled");
  }
  if (commands_file) {
    // A shell's line may end in an exec of this binary: local runs only (a
    // cluster node need not have it).
    const std::string exec_helper = plan.supervisor.launcher ? std::string() : own_binary(own_argv0);
    std::vector<std::size_t> line_numbers;
    std::vector<std::string> commands = read_commands_file(*commands_file, &line_numbers);
    const std::vector<WorkerName> names = split_worker_names(commands, line_numbers, naming,
                                                             *commands_file == "-" ? "stdin" : *commands_file);
    std::size_t next = 0;
    for (std::string& command : commands) {
      jobwarden::WorkerSpec spec = spec_for_line(command, base, exec_helper);
      if (spec.env.count(exec_report_env) != 0 && !plan.supervisor.launcher) {
        plan.supervisor.launcher = std::make_shared<ExecReportLauncher>();
      }
      spec.id = names[next].id;
      spec.label = names[next++].label;
      plan.workers.push_back(std::move(spec));
      plan.lines.push_back(std::move(command));
    }
  } else if (args.command_given()) {
    if (args.command().empty() || args.command()[0].empty()) throw UsageError("nothing to run after \"--\"");
    jobwarden::WorkerSpec spec = base;
    spec.id = "1";
    spec.argv = args.command();
    if (label) {
      check_label(*label, "--label");
      spec.label = *label;
    }
    plan.workers.push_back(std::move(spec));
  } else {
    throw UsageError("nothing to run: give -- CMD [ARG...] or --commands FILE");
  }
  if (auto input = args.value("input")) {
    const jobwarden::InputSpec stdin_spec = input_option(*input, plan.workers.size());
    for (auto& spec : plan.workers) spec.stdin_spec = stdin_spec;
  }
  if (auto slots = args.value("slots")) plan.supervisor.shared_slots = slots_option(*slots);  // last: it makes a directory
  return plan;
}

/// The live progress display of `run`: redrawn in place on a terminal, a
/// line a second otherwise (when forced with --progress).
class LiveDisplay {
 public:
  LiveDisplay(std::FILE* out, bool redraw) : out_(out), redraw_(redraw) {}

  /// Draws the job now.
  void draw(const jobwarden::JobStatus<>& status, milliseconds elapsed) {
    if (!redraw_) {
      const auto& summary = status.summary;
      print(out_, "[{}] job \"{}\" {}/{} done: {} running, {} pending, {} succeeded, {} failed\n",
            jobwarden::format_duration(elapsed), status.job_id, summary.done, summary.total, summary.running,
            summary.pending, summary.succeeded, summary.failed);
      std::fflush(out_);
      return;
    }
    const TerminalSize size = terminal_size(::fileno(out_));
    const std::size_t columns = static_cast<std::size_t>(size.columns) - 1;  // never wrap
    const std::size_t rows = std::min<std::size_t>(static_cast<std::size_t>(size.rows) - 2, 20);
    std::string frame;
    if (lines_drawn_ > 0) frame += fmt::format("\x1b[{}F\x1b[J", lines_drawn_);
    const auto lines = render_live(status, elapsed, columns, rows);
    for (const auto& line : lines) frame += line + "\n";
    lines_drawn_ = lines.size();
    write_text(out_, frame);
    std::fflush(out_);
  }

  /// How long between two frames.
  milliseconds interval() const { return redraw_ ? 200ms : 1000ms; }

  std::FILE* stream() const { return out_; }

 private:
  std::FILE* out_;
  bool redraw_;
  std::size_t lines_drawn_ = 0;
};

/// The closing lines of a shown `run`: the verdict and, for every worker that
/// did not succeed, how it ended and where its logs are.
void print_run_verdict(std::FILE* out, const jobwarden::JobStatus<>& status, const std::string& job_dir,
                       milliseconds elapsed) {
  print(out, "job \"{}\" {} in {}: {} of {} workers succeeded\n", status.job_id, jobwarden::to_string(status.state),
        jobwarden::format_duration(elapsed), status.summary.succeeded, status.summary.total);
  std::size_t shown = 0;
  for (const auto& worker : status.workers) {
    if (!jobwarden::is_terminal(worker.state) || worker.state == jobwarden::WorkerState::succeeded) continue;
    if (++shown > 20) {
      print(out, "  ... and {} more\n", status.failed.size() - 20);
      break;
    }
    print(out, "  {}  {}  {}\n", worker.id, jobwarden::to_string(worker.state), outcome_text(worker));
    // Where the error usually is: the last line the worker wrote to stderr.
    if (worker.stderr_tail) {
      std::string text = *worker.stderr_tail;
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      const std::size_t newline = text.rfind('\n');
      if (newline != std::string::npos) text.erase(0, newline + 1);
      if (text.size() > 200) {
        std::size_t cut = 200;
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not in a character
        text = text.substr(0, cut) + "...";
      }
      if (!text.empty()) print(out, "      stderr: {}\n", printable(text));
    }
  }
  if (shown > 0) {
    print(out, "logs: {}/workers/<id>.stdout.log, <id>.stderr.log (jobwarden logs --worker ID [--stderr])\n",
          job_dir);
  }
  std::fflush(out);
}

/// Why `run --resume` could not open the job (exit 2).
std::string describe_resume_error(std::error_code ec, const std::string& root, const std::string& job) {
  if (ec == jobwarden::errc::invalid_state_transition) {
    return fmt::format("--resume: job \"{}\" under {} has not finished and its supervisor could not be shown dead "
                       "('jobwarden stop' recovers it where it ran)",
                       job, root);
  }
  if (ec == jobwarden::errc::bad_status_file) {
    return fmt::format("--resume: job \"{}\" under {} has no readable job record ('jobwarden status' shows why)",
                       job, root);
  }
  return fmt::format("--resume: cannot resume job \"{}\" under {}: {}", job, root, ec.message());
}

/// For a resumed job, before the progress display: how many workers were kept.
void print_resumed(std::FILE* out, const std::vector<jobwarden::WorkerInfo>& workers, const std::string& job) {
  std::size_t kept = 0;
  for (const auto& worker : workers) kept += worker.kept ? 1 : 0;
  if (kept == 0) return;
  print(out, "job \"{}\" resumed: {} of {} workers kept from its earlier run, {} to run\n", job, kept,
        workers.size(), workers.size() - kept);
  std::fflush(out);
}

/// Opens job `plan.supervisor.job_id` (its directory, lock and journal);
/// a job with a live supervisor, or a finished one without --replace, is a
/// usage error.
jobwarden::JobSupervisor<> open_job(const RunPlan& plan) {
  std::error_code ec;
  const std::string& root = plan.supervisor.root;
  const std::string& job = plan.supervisor.job_id;
  jobwarden::JobSupervisor<> supervisor(plan.supervisor, ec);
  if (ec == jobwarden::errc::job_locked) {
    throw UsageError(fmt::format("job \"{}\" under {} already has a live supervisor", job, root));
  }
  if (ec == jobwarden::errc::job_exists) {
    throw UsageError(fmt::format("job \"{}\" already exists under {} (--replace reuses the id of a finished job; "
                                 "'jobwarden clean' removes old ones)",
                                 job, root));
  }
  if (ec && plan.supervisor.resume_finished_job) throw UsageError(describe_resume_error(ec, root, job));
  if (ec) throw UsageError(fmt::format("cannot open job \"{}\" under {}: {}", job, root, ec.message()));
  return supervisor;
}

/// `run --cpu-weight` where it could not be applied (no cgroups, no cpu
/// controller): one warning line with the first reason; the workers ran.
void print_cpu_weight_warning(const std::vector<jobwarden::WorkerInfo>& workers) {
  std::size_t unweighted = 0;
  std::string reason;
  for (const auto& worker : workers) {
    if (worker.cpu_weight_error.empty()) continue;
    if (unweighted++ == 0) reason = worker.cpu_weight_error;
  }
  if (unweighted == 0) return;
  const std::string prefix = "cpu_weight not applied: ";
  if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
  print(stderr, "jobwarden run: warning: --cpu-weight not applied to {} {}: {}\n", unweighted,
        unweighted == 1 ? "worker" : "workers", printable(reason));
}

/// Runs an open job whose workers are submitted until every worker has ended,
/// records `run`'s exit status in the job's final record and returns it. With
/// `detached`, there is no display and the messages (the verdict included)
/// go to stderr, which is supervisor.log by then.
int supervise(const RunPlan& plan, jobwarden::JobSupervisor<>& supervisor, std::optional<LiveDisplay>& display,
              int signal_pipe, bool detached) {
  const auto started = Clock::now();
  auto elapsed = [&] { return std::chrono::duration_cast<milliseconds>(Clock::now() - started); };
  std::optional<Clock::time_point> next_frame;
  auto redraw = [&] {
    std::error_code read_error;
    auto status = supervisor.status(read_error);
    if (!read_error) display->draw(status, elapsed());
  };

  int stop_signal = 0;
  bool halt_told = false;  // the halt (--halt) was announced
  while (supervisor.active_count() > 0) {
    int timeout_ms = -1;
    if (auto timeout = supervisor.next_timeout()) {
      timeout_ms = static_cast<int>(std::min<long long>(timeout->count(), 60'000));
    }
    if (display) {
      const auto now = Clock::now();
      if (!next_frame || *next_frame <= now) {
        redraw();
        next_frame = now + display->interval();
      }
      const auto until_frame = std::chrono::ceil<milliseconds>(*next_frame - now).count();
      timeout_ms = timeout_ms < 0 ? static_cast<int>(until_frame) : std::min(timeout_ms, static_cast<int>(until_frame));
    }
    pollfd fds[2] = {{supervisor.event_fd(), POLLIN, 0}, {signal_pipe, POLLIN, 0}};
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      throw std::system_error(errno, std::system_category(), "poll");
    }
    if (const int received = drain_signals(signal_pipe); received != 0 && stop_signal == 0) {
      stop_signal = received;
      if (display || detached || ::isatty(STDERR_FILENO) == 1) {
        print(stderr, "jobwarden run: {} received: stopping {} running workers\n", jobwarden::signal_name(received),
              supervisor.running_count());
        std::fflush(stderr);
      }
      supervisor.begin_shutdown();
    }
    supervisor.poll();
    if (!halt_told && supervisor.halted()) {
      halt_told = true;
      if (display || detached || ::isatty(STDERR_FILENO) == 1) {
        const bool now = plan.supervisor.halt.mode == jobwarden::HaltMode::now;
        print(stderr, "jobwarden run: {}: starting no more workers, {} {} running\n", supervisor.halt_reason(),
              now ? "stopping" : "waiting for", supervisor.running_count());
      }
    }
  }
  // The exit status goes into the final job line: set before finish().
  const int code = all_succeeded(supervisor.workers()) ? 0 : 1;
  supervisor.set_exit_status(code);
  // Only now: finish() also stops queued workers from starting and ended
  // ones from restarting (it clears the supervisor's `accepting` flag, which
  // those paths test), so it waits until every worker is terminal. The
  // poll() after it writes the job's final state.
  supervisor.finish();
  supervisor.poll();

  if (const auto failures = supervisor.status_write_failures(); failures > 0 && (detached || !plan.quiet)) {
    const auto [error, path] = supervisor.last_status_error();
    print(stderr, "jobwarden run: warning: {} {} of the job directory failed; the last: {}: {}\n", failures,
          failures == 1 ? "write" : "writes", path, error.message());
  }

  if (detached || !plan.quiet) print_cpu_weight_warning(supervisor.workers());

  // The final status is read only for someone who sees it: a quiet run with
  // no --json ends on the supervisor's own records.
  if (display || plan.json || detached) {
    std::error_code read_error;
    const auto final_status = supervisor.status(read_error);
    if (detached) {
      if (!read_error) print_run_verdict(stderr, final_status, supervisor.job_dir(), elapsed());
      else print(stderr, "jobwarden run: cannot read the final status: {}\n", read_error.message());
      if (supervisor.halted()) print(stderr, "{}\n", supervisor.halt_reason());
    } else {
      if (display && !read_error) {
        display->draw(final_status, elapsed());
        print_run_verdict(display->stream(), final_status, supervisor.job_dir(), elapsed());
        if (supervisor.halted()) print(display->stream(), "{}\n", supervisor.halt_reason());
      }
      if (plan.json) {
        if (read_error) {
          throw std::system_error(read_error,
                                  "cannot read the final status of job \"" + supervisor.job_id() + "\"");
        }
        print(stdout, "{}\n", final_status.to_json().dump());
        std::fflush(stdout);
      }
    }
  }
  std::fflush(stderr);
  return code;
}

/// `run --detach`: the job is opened and supervised by a child in its own
/// session (detach.hpp); this process returns once that child has the job
/// open, printing its directory (with --json, {"job_id", "job_dir", "pid"}).
int run_detached(RunPlan& plan) {
  const DetachedJob started =
      detach_supervisor(plan.supervisor.root, plan.supervisor.job_id, [&](DetachReporter& reporter) -> int {
        // Handlers first: a signal that arrives while the job starts is not lost.
        const int signal_pipe = install_stop_signal_handlers();
        jobwarden::JobSupervisor<> supervisor = open_job(plan);
        // The lock is held: the log is this supervisor's alone (a --replace
        // empties the one of the job it replaces).
        const std::string log_path = supervisor.job_dir() + "/" + supervisor_log_name;
        const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_NOCTTY |
                                                        O_CLOEXEC, 0666);
        if (log_fd < 0 || ::dup2(log_fd, STDOUT_FILENO) < 0 || ::dup2(log_fd, STDERR_FILENO) < 0) {
          const std::string why = std::strerror(errno);
          // Nothing ran: the job ends cancelled, with the exit status, rather
          // than reading lost.
          supervisor.set_exit_status(1);
          supervisor.finish();
          supervisor.poll();
          throw std::runtime_error(fmt::format("cannot write {}: {}", log_path, why));
        }
        ::close(log_fd);
        if (plan.supervisor.resume_finished_job) match_earlier_lines(supervisor.workers(), plan);
        for (auto& spec : plan.workers) supervisor.submit(std::move(spec));
        print_resumed(stderr, supervisor.workers(), plan.supervisor.job_id);
        reporter.opened(supervisor.job_dir());

        std::optional<LiveDisplay> no_display;
        try {
          return supervise(plan, supervisor, no_display, signal_pipe, /*detached=*/true);
        } catch (const std::exception& error) {
          // Said where a detached run's messages go, then the job is ended
          // with the status on record if that can still be done; if not, the
          // supervisor's end (its lock released) makes it read lost.
          print(stderr, "jobwarden run: {}\n", error.what());
          std::fflush(stderr);
          try {
            supervisor.set_exit_status(1);
            supervisor.begin_shutdown();
            supervisor.wait_all(std::chrono::minutes(10));
            supervisor.finish();
            supervisor.poll();
          } catch (const std::exception& again) {
            print(stderr, "jobwarden run: cannot end the job: {}\n", again.what());
          }
          return 1;
        }
      });
  if (plan.json) {
    print(stdout, "{}\n",
          nlohmann::json{{"job_id", plan.supervisor.job_id}, {"job_dir", started.job_dir}, {"pid", started.pid}}
              .dump());
  } else {
    print(stdout, "{}\n", started.job_dir);
  }
  std::fflush(stdout);
  return 0;
}

int command_run(const Arguments& args) {
  RunPlan plan = plan_run(args);  // every usage error is found here, before any write
  if (plan.detach) return run_detached(plan);

  // The display goes where a terminal is: stderr first (stdout may be piped),
  // then stdout (unless it carries --json).
  std::optional<LiveDisplay> display;
  if (!plan.quiet) {
    const bool tty_err = ::isatty(STDERR_FILENO) == 1;
    const bool tty_out = ::isatty(STDOUT_FILENO) == 1 && !plan.json;
    if (tty_err) display.emplace(stderr, true);
    else if (tty_out) display.emplace(stdout, true);
    else if (plan.force_progress) display.emplace(stderr, false);
  }

  // Handlers first: a signal that arrives while the job starts is not lost.
  const int signal_pipe = install_stop_signal_handlers();
  jobwarden::JobSupervisor<> supervisor = open_job(plan);
  // A replaced or resumed job's detached log is an earlier run's (its verdict
  // would read as this run's); a detached run empties it instead.
  if (plan.supervisor.replace_finished_job || plan.supervisor.resume_finished_job) ::unlink((supervisor.job_dir() + "/" + supervisor_log_name).c_str());
  if (plan.supervisor.resume_finished_job) match_earlier_lines(supervisor.workers(), plan);
  for (auto& spec : plan.workers) supervisor.submit(std::move(spec));
  if (display) print_resumed(display->stream(), supervisor.workers(), plan.supervisor.job_id);
  return supervise(plan, supervisor, display, signal_pipe, /*detached=*/false);
}

// ---- status -----------------------------------------------------------------------

/// What `status` prints: the table (default), the aggregated JSON, or the job log.
enum class StatusFormat { table, json, tsv };

/// `--format` and `--json` of `status`, checked against each other and `--watch`.
StatusFormat status_format(const Arguments& args) {
  StatusFormat format = args.has("json") ? StatusFormat::json : StatusFormat::table;
  if (auto text = args.value("format")) {
    StatusFormat chosen;
    if (*text == "table") chosen = StatusFormat::table;
    else if (*text == "json") chosen = StatusFormat::json;
    else if (*text == "tsv") chosen = StatusFormat::tsv;
    else throw UsageError("--format: expected table, json or tsv, not " + printable("\"" + *text + "\""));
    if (args.has("json") && chosen != StatusFormat::json) {
      throw UsageError("--json and --format " + *text + " contradict each other");
    }
    format = chosen;
  }
  if (format == StatusFormat::tsv && args.has("watch")) {
    throw UsageError("--format tsv prints the job log once; leave out --watch (or watch with --format json)");
  }
  return format;
}

int command_status(const Arguments& args) {
  const std::string root = root_of(args);
  const std::string job = job_of(args);
  const StatusFormat format = status_format(args);
  const bool json = format == StatusFormat::json;
  const bool watch = args.has("watch");
  jobwarden::StatusAggregatorOptions options;
  options.watch_for_changes = watch;  // a single read never profits from watching
  jobwarden::StatusAggregator<> aggregator(root, options);

  auto read = [&] {
    std::error_code ec;
    auto status = aggregator.read(job, ec);
    if (ec) throw UsageError(describe_job_error(ec, root, job));
    return status;
  };
  auto render = [&](const jobwarden::JobStatus<>& status, bool fit_screen) {
    if (json) return status.to_json().dump() + "\n";
    if (format == StatusFormat::tsv) return render_joblog(status, std::chrono::system_clock::now());
    std::size_t columns = 200, rows = 0;
    if (fit_screen) {
      const TerminalSize size = terminal_size(STDOUT_FILENO);
      columns = static_cast<std::size_t>(size.columns) - 1;
      rows = static_cast<std::size_t>(size.rows) - 1;
    } else if (::isatty(STDOUT_FILENO) == 1) {
      columns = static_cast<std::size_t>(terminal_size(STDOUT_FILENO).columns) - 1;
    }
    std::string text;
    for (const auto& line : render_status(status, columns, rows)) text += line + "\n";
    return text;
  };

  if (!watch) {
    write_text(stdout, render(read(), false));
    std::fflush(stdout);
    return 0;
  }
  const bool tty = ::isatty(STDOUT_FILENO) == 1 && !json;
  std::string last_body;
  bool first = true;
  for (;;) {
    const auto status = read();
    const std::string text = render(status, tty);
    if (tty) {
      print(stdout, "\x1b[H\x1b[2J{}", text);
      std::fflush(stdout);
    } else {
      // A new snapshot only when something but the clock changed.
      auto body = status.to_json();
      body.erase("elapsed_seconds");
      for (auto& worker : body["workers"]) worker.erase("stale");
      const std::string body_text = body.dump();
      if (body_text != last_body) {
        if (!first && !json) write_text(stdout, "\n");
        write_text(stdout, text);
        std::fflush(stdout);
        last_body = body_text;
        first = false;
      }
    }
    if (jobwarden::is_terminal(status.state)) return 0;
    std::this_thread::sleep_for(tty ? 500ms : 1000ms);
  }
}

// ---- list -------------------------------------------------------------------------

int command_list(const Arguments& args) {
  const std::string root = root_of(args);
  jobwarden::StatusAggregator<> aggregator(root);
  std::error_code ec;
  const jobwarden::JobList list = aggregator.list_jobs(ec);
  if (ec) throw UsageError(fmt::format("cannot list the jobs under {}: {}", root, ec.message()));
  if (args.has("json")) {
    print(stdout, "{}\n", list.to_json().dump());
    std::fflush(stdout);
    return 0;
  }
  if (list.jobs.empty()) {
    print(stdout, "no jobs under {}\n", root);
  } else {
    std::size_t id_width = 3;
    for (const auto& job : list.jobs) id_width = std::max(id_width, job.job_id.size());
    // Every column is ASCII (ids are [A-Za-z0-9._-]), so fmt's widths align it.
    constexpr auto row_format = "{:<{}}  {:<10}  {:<11}  {:<6}  {:<19}  {:<19}  {}\n";
    print(stdout, row_format, "JOB", id_width, "STATE", "DONE", "FAILED", "CREATED (UTC)", "ENDED (UTC)",
          "SUPERVISOR");
    for (const auto& job : list.jobs) {
      const nlohmann::json row = job.to_json();
      std::string done = "-", failed = "-";
      if (job.summary) {
        done = fmt::format("{}/{}", job.summary->done, job.summary->total);
        failed = fmt::format("{}", job.summary->failed);
      }
      print(stdout, row_format, job.job_id, id_width, jobwarden::to_string(job.state), done, failed,
            time_text(row["created_at"]), time_text(row["ended_at"]), job.supervisor_alive ? "alive" : "-");
    }
  }
  for (const auto& error : list.errors) {
    print(stderr, "jobwarden list: {}: {}\n", printable(error.path), printable(error.error));
  }
  std::fflush(stdout);
  return 0;
}

// ---- stop -------------------------------------------------------------------------

/// `2 workers (1, 2)`, with at most a few ids.
std::string workers_text(const std::vector<std::string>& ids) {
  std::string text = fmt::format("{} {}", ids.size(), ids.size() == 1 ? "worker" : "workers");
  if (ids.empty()) return text;
  text += " (";
  for (std::size_t i = 0; i < ids.size() && i < 8; ++i) text += (i ? ", " : "") + ids[i];
  if (ids.size() > 8) text += ", ...";
  return text + ")";
}

int command_stop(const Arguments& args) {
  const std::string root = root_of(args);
  const std::string job = job_of(args);
  const auto grace = duration_option(args, "grace");
  milliseconds wait_limit = std::max<milliseconds>(grace.value_or(10s) + 30s, 60s);
  if (auto wait = duration_option(args, "wait")) wait_limit = *wait;

  std::error_code ec;
  const jobwarden::StopOutcome outcome = jobwarden::stop_job(root, job, grace, wait_limit, ec);
  for (const auto& [where, problem] : outcome.recovery.problems) {
    print(stderr, "jobwarden stop: {}: {}\n", printable(where), printable(problem));
  }
  if (ec == jobwarden::errc::unknown_job || ec == jobwarden::errc::invalid_id ||
      ec == std::errc::too_many_symbolic_link_levels) {
    throw UsageError(describe_job_error(ec, root, job));
  }
  if (ec) {
    std::string why = ec.message();
    if (ec == std::errc::no_such_file_or_directory) why = "its supervisor.lock is missing, so nothing proves its supervisor dead";
    if (ec == std::errc::operation_not_supported) why = "its supervisor ran on another host; stop it there";
    print(stderr, "jobwarden stop: cannot stop job \"{}\" under {}: {}\n", job, root, why);
    return 1;
  }
  const std::string state(jobwarden::to_string(outcome.state));
  switch (outcome.action) {
    case jobwarden::StopAction::already_finished:
      if (!outcome.recovery.problems.empty()) {  // no journal: its problem is printed above
        print(stdout, "job \"{}\" was never recorded by a supervisor ({}): nothing to stop\n", job, state);
        return outcome.finished ? 0 : 1;
      }
      print(stdout, "job \"{}\" had already finished ({})\n", job, state);
      return 0;
    case jobwarden::StopAction::finished_on_its_own:
      print(stdout, "job \"{}\" finished on its own before the stop took effect ({}): no worker was stopped\n", job,
            state);
      return 0;
    case jobwarden::StopAction::requested:
      if (!outcome.finished) {
        print(stderr, "jobwarden stop: asked job \"{}\" to stop, but its supervisor was still stopping after {}\n",
              job, jobwarden::format_duration(wait_limit));
        return 1;
      }
      print(stdout, "stopped job \"{}\": its supervisor stopped every worker ({})\n", job, state);
      return 0;
    case jobwarden::StopAction::recovered: {
      const auto& report = outcome.recovery;
      print(stdout, "job \"{}\" had no live supervisor: {}; marked {} lost ({})\n", job,
            report.stopped.empty() ? "nothing of it was running" : "stopped " + workers_text(report.stopped),
            workers_text(report.marked_lost), state);
      return outcome.finished ? 0 : 1;
    }
  }
  return 1;
}

// ---- signal, pause, resume ------------------------------------------------------

int command_control(const Arguments& args, jobwarden::ControlAction action) {
  const std::string root = root_of(args);
  const std::string job = job_of(args);
  jobwarden::ControlRequest request;
  request.action = action;
  request.worker = args.value("worker");
  if (request.worker && !jobwarden::is_valid_id(*request.worker)) {
    throw UsageError(fmt::format("invalid worker id {}", printable("\"" + *request.worker + "\"")));
  }
  if (action == jobwarden::ControlAction::signal) {
    if (args.positionals().empty()) throw UsageError("missing the signal to send (e.g. USR1)");
    const auto number = jobwarden::signal_from_string(args.positionals().front());
    if (!number) throw UsageError(fmt::format("{} is not a signal", printable("\"" + args.positionals().front() + "\"")));
    request.signal = *number;
    if (args.has("leader")) request.scope = jobwarden::SignalScope::leader;
  }
  const milliseconds wait_limit = duration_option(args, "wait").value_or(10s);
  const std::string verb(jobwarden::to_string(action));

  std::error_code ec;
  const jobwarden::ControlReply reply = jobwarden::control_job(root, job, request, wait_limit, ec);
  if (ec == jobwarden::errc::unknown_job || ec == jobwarden::errc::invalid_id ||
      ec == std::errc::too_many_symbolic_link_levels) {
    throw UsageError(describe_job_error(ec, root, job));
  }
  if (ec == jobwarden::errc::no_live_supervisor) {
    print(stderr, "jobwarden {}: job \"{}\" has no live supervisor: nothing to {}\n", verb, job, verb);
    return 1;
  }
  if (ec == std::errc::timed_out) {
    print(stderr, "jobwarden {}: job \"{}\"'s supervisor did not answer within {}\n", verb, job,
          jobwarden::format_duration(wait_limit));
    return 1;
  }
  if (ec) {
    print(stderr, "jobwarden {}: cannot {} in job \"{}\" under {}: {}\n", verb, verb, job, root, ec.message());
    return 1;
  }
  bool unknown = false;
  for (const auto& failure : reply.failed) {
    if (failure.reason == "unknown_worker") unknown = true;
    if (failure.worker.empty()) {
      print(stderr, "jobwarden {}: the supervisor could not read the request: {}\n", verb, printable(failure.message));
    } else {
      print(stderr, "jobwarden {}: worker \"{}\": {}\n", verb, failure.worker, printable(failure.message));
    }
  }
  if (!reply.done.empty()) {
    std::string what = verb == "signal" ? fmt::format("sent {} to", jobwarden::signal_name(request.signal))
                       : verb == "pause" ? std::string("paused")
                                         : std::string("resumed");
    std::string scope = action == jobwarden::ControlAction::signal
                            ? (request.scope == jobwarden::SignalScope::leader ? " (leader only)" : " (whole tree)")
                            : "";
    print(stdout, "{} {}{} of job \"{}\"\n", what, workers_text(reply.done), scope, job);
  } else if (reply.failed.empty()) {
    print(stderr, "jobwarden {}: no worker of job \"{}\" is running: nothing to {}\n", verb, job, verb);
    return 1;
  }
  if (unknown && reply.done.empty()) return 2;
  return reply.failed.empty() ? 0 : 1;
}

// ---- clean ------------------------------------------------------------------------

int command_clean(const Arguments& args) {
  const std::string root = root_of(args);
  const auto older_than = duration_option(args, "older-than");
  if (!older_than) throw UsageError("missing --older-than");
  const bool dry_run = args.has("dry-run");
  std::error_code ec;
  const jobwarden::CleanReport report = jobwarden::clean_jobs(root, *older_than, dry_run, ec);
  if (ec) throw UsageError(fmt::format("cannot clean {}: {}", root, ec.message()));
  if (args.has("json")) {
    print(stdout, "{}\n", report.to_json().dump());
  } else {
    for (const auto& id : report.removed) print(stdout, "{} {}\n", dry_run ? "would remove" : "removed", id);
    if (args.has("verbose")) {
      for (const auto& kept : report.kept) print(stdout, "kept {}: {}\n", kept.job_id, kept.reason);
    }
  }
  std::fflush(stdout);
  for (const auto& error : report.errors) {
    print(stderr, "jobwarden clean: {}: {}{}\n", printable(error.path), printable(error.error),
          error.detail.empty() ? "" : " (" + printable(error.detail) + ")");
  }
  return report.errors.empty() ? 0 : 1;
}

// ---- report -----------------------------------------------------------------------

/// Parses JSON option `--name`, or throws a `UsageError` naming it.
std::optional<nlohmann::json> json_option(const Arguments& args, const std::string& name) {
  auto text = args.value(name);
  if (!text) return std::nullopt;
  nlohmann::json value = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    throw UsageError(fmt::format("--{}: not valid JSON: {}", name, printable(text->substr(0, 80))));
  }
  return value;
}

int command_report(const Arguments& args) {
  // Everything is checked before the status file is touched.
  std::optional<jobwarden::WorkerState> state;
  if (auto name = args.value("state")) {
    state = jobwarden::worker_state_from_string(*name);
    if (!state) {
      throw UsageError(fmt::format(
          "--state: unknown state {} (pending, running, succeeded, failed, crashed, timed_out, stalled, cancelled, "
          "spawn_failed, lost)",
          printable("\"" + *name + "\"")));
    }
  }
  std::optional<nlohmann::json> progress = json_option(args, "progress");
  if (args.has("done") || args.has("total")) {
    if (!args.has("done") || !args.has("total")) throw UsageError("--done and --total go together");
    if (progress) throw UsageError("give either --progress or --done/--total, not both");
    progress = nlohmann::json{{"done", parse_count(args.required("done"), "done")},
                              {"total", parse_count(args.required("total"), "total")}};
  }
  const std::optional<nlohmann::json> result = json_option(args, "result");

  jobwarden::WorkerStatusWriter<>::Options options;
  options.continue_existing = true;  // every call is a new process: keep what earlier calls said
  std::error_code ec;
  auto writer = jobwarden::WorkerStatusWriter<>::from_environment(ec, options);
  if (ec == jobwarden::errc::no_status_file) {
    throw UsageError("JOBWARDEN_STATUS_FILE is not set: 'jobwarden report' runs inside a jobwarden worker");
  }
  if (ec) throw UsageError("cannot open the status file: " + ec.message());

  std::error_code first_error;
  auto note = [&](std::error_code error) {
    if (error && !first_error) first_error = error;
  };
  const auto message = args.value("message");
  const auto error = args.value("error");
  const bool changed = progress || message || error || result || state;
  if (state && *state != writer.state() && !jobwarden::is_allowed_transition(writer.state(), *state)) {
    throw UsageError(fmt::format("--state: cannot go from {} to {} (a terminal state is final)",
                                 jobwarden::to_string(writer.state()), jobwarden::to_string(*state)));
  }
  // One call, one write (one seq): every field is set, then written once.
  note(writer.batch([&] {
    if (progress) note(writer.progress(*progress));
    if (message) note(writer.message(*message));
    if (error) note(writer.set_error(*error));
    if (result) note(writer.result(*result));
    if (state) note(writer.set_state(*state));
    if (!changed) note(writer.heartbeat());
  }));
  if (first_error) {
    print(stderr, "jobwarden report: cannot write {}: {}\n", writer.path(), first_error.message());
    return 1;
  }
  return 0;
}

// ---- dispatch ---------------------------------------------------------------------

struct Command {
  const char* name;
  const char* help;
  std::vector<OptionSpec> options;
  bool accepts_command;
  std::function<int(const Arguments&)> run;
  std::size_t positionals = 0;  // words that are not options (signal's SIG)
};

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"run",
       run_help,
       {root_option, job_option, {"commands", true}, {"jobs", true}, {"timeout", true}, {"grace", true},
        {"stop-signal", true}, {"stall", true}, {"restart", true}, {"max-restarts", true}, {"halt", true}, {"warn", true},
        {"env", true, true}, {"cwd", true}, {"input", true}, {"replace"}, {"resume"}, {"json"}, {"progress"},
        {"quiet"}, {"no-orphan-guard"}, {"no-cgroups"}, {"detach"}, {"launcher", true}, {"slurm-arg", true, true},
        {"slurm-partition", true}, {"slurm-account", true}, {"slurm-mem", true}, {"slurm-cpus", true},
        {"named"}, {"labeled"}, {"label", true}, {"slots", true}, {"nice", true}, {"cpu-weight", true}},
       true,
       command_run},
      {"status", status_help, {root_option, job_option, {"json"}, {"watch"}, {"format", true}}, false, command_status},
      {"list", list_help, {root_option, {"json"}}, false, command_list},
      {"logs",
       logs_help,
       {root_option, job_option, {"worker", true}, {"stderr"}, {"follow"}},
       false,
       [](const Arguments& args) { return command_logs(args, root_of(args), job_of(args)); }},
      {"stop", stop_help, {root_option, job_option, {"grace", true}, {"wait", true}}, false, command_stop},
      {"signal",
       signal_help,
       {root_option, job_option, {"worker", true}, {"leader"}, {"wait", true}},
       false,
       [](const Arguments& args) { return command_control(args, jobwarden::ControlAction::signal); },
       1},
      {"pause",
       pause_help,
       {root_option, job_option, {"worker", true}, {"wait", true}},
       false,
       [](const Arguments& args) { return command_control(args, jobwarden::ControlAction::pause); }},
      {"resume",
       resume_help,
       {root_option, job_option, {"worker", true}, {"wait", true}},
       false,
       [](const Arguments& args) { return command_control(args, jobwarden::ControlAction::resume); }},
      {"clean",
       clean_help,
       {root_option, {"older-than", true}, {"dry-run"}, {"json"}, {"verbose"}},
       false,
       command_clean},
      {"report",
       report_help,
       {{"state", true}, {"done", true}, {"total", true}, {"progress", true}, {"message", true}, {"result", true},
        {"error", true}},
       false,
       command_report},
  };
  return table;
}

int main_impl(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty()) {
    write_text(stderr, "jobwarden: missing command (run, status, list, logs, stop, signal, pause, resume, clean, report; see jobwarden --help)\n");
    return 2;
  }
  const std::string name = words.front();
  if (name == "--help" || name == "-h" || name == "help") {
    write_text(stdout, main_help);
    return 0;
  }
  if (name == "--version" || name == "version") {
    print(stdout, "jobwarden {}\n", jobwarden::version_string);
    return 0;
  }
  const Command* command = nullptr;
  for (const auto& candidate : commands()) {
    if (name == candidate.name) command = &candidate;
  }
  if (command == nullptr) {
    print(stderr, "jobwarden: unknown command {} (run, status, list, logs, stop, signal, pause, resume, clean, report; see jobwarden --help)\n",
          printable("\"" + name + "\""));
    return 2;
  }
  words.erase(words.begin());
  for (const auto& word : words) {
    if (word == "--") break;
    if (word == "--help" || word == "-h") {
      write_text(stdout, command->help);
      return 0;
    }
  }
  try {
    return command->run(Arguments::parse(words, command->options, command->accepts_command, command->positionals));
  } catch (const UsageError& error) {
    print(stderr, "jobwarden {}: {}\n", command->name, error.what());
    return 2;
  } catch (const std::exception& error) {
    print(stderr, "jobwarden {}: {}\n", command->name, error.what());
    return 1;
  }
}

}  // namespace
}  // namespace jobwarden_cli

int main(int argc, char** argv) {
  // Before anything else: the helper a worker's shell execs changes nothing
  // the program it execs would inherit (signal dispositions included).
  if (argc > 1 && std::strcmp(argv[1], jobwarden_cli::exec_tail_mode) == 0) {
    return jobwarden_cli::exec_tail(argc, argv);
  }
  jobwarden_cli::own_argv0 = argv[0];
  // A closed stdout (`jobwarden status | head`) must not kill a run mid-job;
  // workers get every signal disposition reset to the default.
  std::signal(SIGPIPE, SIG_IGN);
  return jobwarden_cli::main_impl(argc, argv);
}
