// pipeline_stages: job dependencies without a DAG engine. Stage 2 of an item
// runs only after stage 1 of that item succeeded, and the rule lives in the
// host's event handler: when a stage-1 worker's `exited` event says
// `succeeded`, the handler submits that item's stage-2 worker; when it says
// anything else, the handler submits nothing for it and reports why.
//
// Stage 1, "fetch": a /bin/sh worker per item that writes the words it
// "fetched" to a file, one per line (alpha, beta and delta succeed; gamma
// writes part of its file, says the mirror is unreachable and exits 3).
// Stage 2, "index": `sort -u` with stage 1's file as its stdin; its stdout
// lines (handed over by an output handler) are the item's distinct words.
// Each item moves on as soon as its own fetch ends: a fast item's index runs
// while slower fetches still do. When the last fetch has ended, and with it
// the last follow-on has been submitted, the handler calls `finish()`: no more
// work, so the job's final state is written once everything has ended.
// (Called earlier, `finish()` would make the handler's later `submit` fail:
// a finished job takes no more work.)
//
// It checks what happened: every fetch ended as designed, an index ran for
// exactly the fetches that succeeded, each with the right words, and the job
// ended `failed` (gamma did not succeed). Exit 0 when all of that holds.
//
//   pipeline_stages [--root DIR] [--wait-all]
//     --root DIR   keep the job directory (DIR/pipeline) instead of a temporary one
//     --wait-all   block in wait_all() instead of the host's own poll() loop
#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::WorkerState;

namespace {

/// One item of the pipeline and what became of its two stages.
struct Item {
  std::string name;
  std::vector<std::string> words;  ///< what its fetch writes, one per line
  bool fetch_fails = false;        ///< designed to fail: its index must never run
  std::string delay;               ///< seconds its fetch takes
  std::string data_file;           ///< stage 1's output, stage 2's input
  std::optional<WorkerState> fetch_state, index_state;
  std::vector<std::string> index_lines;  ///< stage 2's stdout
};

std::string state_name(const std::optional<WorkerState>& state) {
  return state ? std::string(jobwarden::to_string(*state)) : "-";
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

/// The last non-empty line of a worker's stderr tail.
std::string last_line(const std::string& text) {
  std::string line, last;
  for (char c : text + "\n") {
    if (c != '\n') {
      line += c;
    } else if (!line.empty()) {
      last = std::move(line);
      line.clear();
    }
  }
  return last;
}

int run(const std::string& root_arg, bool use_wait_all) {
  // Piped into `head`, we must still stop our workers and clean up rather than
  // die of SIGPIPE (workers start with every signal back at its default).
  std::signal(SIGPIPE, SIG_IGN);
  std::string scratch =
      (std::filesystem::temp_directory_path() / "pipeline-stages-XXXXXX").string();
  if (::mkdtemp(scratch.data()) == nullptr) {
    throw std::runtime_error("cannot make a temporary directory");
  }
  struct RemoveScratch {
    std::string path;
    ~RemoveScratch() { std::filesystem::remove_all(path); }
  } remove_scratch{scratch};  // declared before the supervisor: removed after it is gone

  jobwarden::SupervisorOptions options;
  options.job_id = "pipeline";
  options.root = root_arg.empty() ? scratch + "/jobs" : root_arg;
  // A follow-on waits its turn like any worker: behind the work submitted
  // before it (beta's index waits behind delta's fetch, queued from the start).
  options.max_concurrency = 3;
  jobwarden::JobSupervisor<> supervisor(options);

  std::vector<Item> items;  // all added before anything points into it
  auto add = [&](const std::string& name, std::vector<std::string> words, bool fails,
                 const std::string& delay) {
    Item& item = items.emplace_back();
    item.name = name;
    item.words = std::move(words);
    item.fetch_fails = fails;
    item.delay = delay;
    item.data_file = scratch + "/" + name + ".txt";
  };
  add("alpha", {"pear", "plum", "apple", "pear", "fig"}, false, "0.3");
  add("beta", {"oak", "ash", "elm", "oak"}, false, "0.1");
  add("gamma", {"kiwi", "lime"}, true, "0.2");
  add("delta", {"rye", "oat", "barley", "rye", "oat"}, false, "0.5");
  std::map<std::string, Item*> by_worker;  // "fetch-alpha", "index-alpha" -> alpha
  std::size_t fetches_left = items.size();

  const auto start = std::chrono::steady_clock::now();
  auto say = [&](const std::string& text) {
    std::printf("[%5.3fs] %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                text.c_str());
    std::fflush(stdout);
  };

  // Stage 2 of an item: its index, reading stage 1's file as its stdin.
  auto submit_index = [&](Item& item) {
    jobwarden::WorkerSpec spec;
    spec.id = "index-" + item.name;
    spec.label = "stage 2 of " + item.name;
    spec.argv = {"sort", "-u"};
    spec.env["LC_ALL"] = "C";  // the same order everywhere
    spec.stdin_spec = jobwarden::InputSpec::from_file(item.data_file);
    spec.timeout = 30s;
    by_worker[spec.id] = &item;
    std::error_code ec;  // a throw would leave the handler and end the host's loop
    supervisor.submit(spec, ec);
    if (ec) {
      say(spec.id + ": could not be submitted: " + ec.message());
      by_worker.erase(spec.id);
    }
  };

  // Stage 2's stdout, line by line, inside poll().
  supervisor.on_output_line([&](const jobwarden::OutputLine& line) {
    auto it = by_worker.find(std::string(line.worker_id));
    if (it != by_worker.end() && line.stream == jobwarden::OutputStream::out &&
        line.worker_id.substr(0, 6) == "index-") {
      it->second->index_lines.emplace_back(line.text);
    }
  });

  // The dependency rule. Runs inside poll() (or wait_all()), on the polling
  // thread, outside the supervisor's lock: it may call submit and finish.
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    if (event.kind != EventKind::exited) return;  // started, timed_out, ...: nothing to decide
    const jobwarden::WorkerInfo& w = event.worker;
    Item& item = *by_worker.at(w.id);
    const std::string how = w.exit_code ? "exit " + std::to_string(*w.exit_code) : w.signal_name();
    if (w.id.rfind("fetch-", 0) == 0) {
      item.fetch_state = w.state;
      if (w.state == WorkerState::succeeded) {
        say(w.id + " succeeded -> submitting index-" + item.name);
        submit_index(item);
      } else {
        std::string why = last_line(w.stderr_tail);
        if (why.empty()) why = w.error;
        say(w.id + " " + state_name(w.state) + " (" + how + "): " + why +
            " -> nothing submitted for " + item.name);
      }
      if (--fetches_left == 0) {
        say("every fetch has ended: finish(), no more work will be submitted");
        supervisor.finish();
      }
    } else {
      item.index_state = w.state;
      say(w.id + " " + state_name(w.state) + " (" + how + "): " + joined(item.index_lines));
    }
  });

  say(std::to_string(items.size()) +
      " fetches, each followed by an index of what it fetched; job directory " +
      supervisor.job_dir());
  for (Item& item : items) {
    jobwarden::WorkerSpec spec;
    spec.id = "fetch-" + item.name;
    spec.label = "stage 1 of " + item.name;
    // The script takes its delay and output file as $1 and $2, the words after.
    const char* script = item.fetch_fails
                             ? "sleep \"$1\"; out=$2; printf '%s\\n' \"$3\" > \"$out\"; "
                               "echo \"fetch: mirror unreachable (connection refused)\" >&2; exit 3"
                             : "sleep \"$1\"; out=$2; shift 2; printf '%s\\n' \"$@\" > \"$out\"";
    spec.argv = {"/bin/sh", "-c", script, "fetch", item.delay, item.data_file};
    spec.argv.insert(spec.argv.end(), item.words.begin(), item.words.end());
    spec.timeout = 30s;
    by_worker[spec.id] = &item;
    supervisor.submit(spec);
  }

  if (use_wait_all) {
    // Enough on its own: a handler's submit happens inside the poll() that
    // delivered the exit, so the new worker is counted before wait_all() looks.
    supervisor.wait_all();
  } else {
    // The host's own loop: sleep on the supervisor's descriptor, then poll().
    while (supervisor.active_count() > 0) {
      pollfd fd{supervisor.event_fd(), POLLIN, 0};
      // On Linux the descriptor covers deadlines too; next_timeout() is for elsewhere.
      int wait_ms = -1;
      if (auto next = supervisor.next_timeout()) wait_ms = static_cast<int>(next->count());
      ::poll(&fd, 1, wait_ms);
      supervisor.poll();  // never blocks: reaps, starts, runs the handlers above
    }
  }

  // The verdict: stage 2 ran exactly for the stage-1 successes, with the right words.
  bool as_designed = true;
  std::printf("\nitem    fetch      index      distinct words\n");
  std::set<std::string> ran;
  for (const auto& w : supervisor.workers()) ran.insert(w.id);
  for (const Item& item : items) {
    const std::set<std::string> distinct(item.words.begin(), item.words.end());
    const std::vector<std::string> expected(distinct.begin(), distinct.end());
    const bool ran_index = ran.count("index-" + item.name) > 0;
    bool ok;
    if (item.fetch_fails) {
      ok = item.fetch_state == WorkerState::failed && !ran_index && !item.index_state;
    } else {
      ok = item.fetch_state == WorkerState::succeeded && ran_index &&
           item.index_state == WorkerState::succeeded && item.index_lines == expected;
    }
    as_designed = as_designed && ok;
    std::printf("%-7s %-10s %-10s %s%s\n", item.name.c_str(), state_name(item.fetch_state).c_str(),
                state_name(item.index_state).c_str(),
                item.index_state ? joined(item.index_lines).c_str() : "(not run)",
                ok ? "" : "   <- not as designed");
  }
  const auto job = supervisor.status();  // read back from the job directory, as any reader would
  std::size_t designed_workers = 0;      // a fetch per item, an index per fetch that succeeds
  for (const Item& item : items) designed_workers += item.fetch_fails ? 1 : 2;
  const bool job_ok = job.state == jobwarden::JobState::failed && ran.size() == designed_workers;
  as_designed = as_designed && job_ok;
  const std::string job_note = job_ok ? ""
                                      : "   <- designed: failed (gamma's fetch), " +
                                            std::to_string(designed_workers) + " workers";
  std::printf("job %s: %s, %zu workers%s\n", supervisor.job_id().c_str(),
              std::string(jobwarden::to_string(job.state)).c_str(), ran.size(), job_note.c_str());
  std::puts(as_designed ? "Stage 2 ran for exactly the items whose stage 1 succeeded, as designed."
                        : "Something did not happen as designed.");
  return as_designed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  bool use_wait_all = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--root") {
      if (i + 1 == argc || argv[i + 1][0] == '\0') {
        std::fprintf(stderr, "pipeline_stages: --root needs a directory\n");
        return 2;
      }
      root = argv[++i];
    } else if (arg == "--wait-all") {
      use_wait_all = true;
    } else {
      std::fprintf(stderr,
                   "pipeline_stages: unknown argument \"%s\" (usage: pipeline_stages "
                   "[--root DIR] [--wait-all])\n",
                   arg.c_str());
      return 2;
    }
  }
  try {
    return run(root, use_wait_all);
  } catch (const std::exception& e) {  // the supervisor has stopped and reaped its workers by now
    std::fprintf(stderr, "pipeline_stages: %s\n", e.what());
    return 1;
  }
}
