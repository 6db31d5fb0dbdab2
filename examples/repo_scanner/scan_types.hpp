#pragma once
// What a scan worker reports and what the host reads back: the typed contract
// between the two halves of repo_scanner. Both sides include this header; the
// JSON functions are what `WorkerStatusWriter<ScanProgress>` writes and
// `StatusAggregator<ScanProgress>` parses.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

/// Progress of one repository scan, reported file by file. On disk it uses
/// the conventional `done`/`total` keys, so generic readers (`jobwarden
/// status`, examples/python/read_job.py) can draw a progress bar for it too.
struct ScanProgress {
  std::size_t files_done = 0;
  std::size_t files_total = 0;
  std::string current_file;  ///< relative to the repository
};

inline void to_json(nlohmann::json& j, const ScanProgress& p) {
  j = {{"done", p.files_done}, {"total", p.files_total}, {"current_file", p.current_file}};
}

inline void from_json(const nlohmann::json& j, ScanProgress& p) {
  j.at("done").get_to(p.files_done);
  j.at("total").get_to(p.files_total);
  p.current_file = j.value("current_file", "");
}

/// One dependency manifest found in a repository.
struct Manifest {
  std::string path;                       ///< relative to the repository
  std::string ecosystem;                  ///< "npm", "pip", "cargo", "go", "maven", "cmake"...
  std::vector<std::string> dependencies;  ///< package names, as the manifest spells them
};

/// The result of scanning one repository.
struct ScanResult {
  std::size_t files_scanned = 0;
  std::vector<Manifest> manifests;
};

inline void to_json(nlohmann::json& j, const Manifest& m) {
  j = {{"path", m.path}, {"ecosystem", m.ecosystem}, {"dependencies", m.dependencies}};
}

inline void from_json(const nlohmann::json& j, Manifest& m) {
  j.at("path").get_to(m.path);
  j.at("ecosystem").get_to(m.ecosystem);
  j.at("dependencies").get_to(m.dependencies);
}

inline void to_json(nlohmann::json& j, const ScanResult& r) {
  j = {{"files_scanned", r.files_scanned}, {"manifests", r.manifests}};
}

inline void from_json(const nlohmann::json& j, ScanResult& r) {
  j.at("files_scanned").get_to(r.files_scanned);
  j.at("manifests").get_to(r.manifests);
}
