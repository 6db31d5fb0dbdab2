#pragma once
// Recognising dependency manifests and reading the dependency names out of
// them. Deliberately small parsers — enough for the common layouts of each
// format, not a full TOML or XML reader. This is the "real work" of a scan
// worker; nothing here knows about jobwarden.

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace manifests {

/// The ecosystem a file name belongs to ("npm" for package.json), if any.
inline std::optional<std::string> ecosystem_of(const std::string& file_name) {
  if (file_name == "package.json") return "npm";
  if (file_name == "requirements.txt" ||
      (file_name.rfind("requirements", 0) == 0 && file_name.size() > 4 &&
       file_name.compare(file_name.size() - 4, 4, ".txt") == 0)) {
    return "pip";
  }
  if (file_name == "pyproject.toml") return "python";
  if (file_name == "Cargo.toml") return "cargo";
  if (file_name == "go.mod") return "go";
  if (file_name == "pom.xml") return "maven";
  if (file_name == "CMakeLists.txt") return "cmake";
  if (file_name == "conanfile.py" || file_name == "conanfile.txt") return "conan";
  if (file_name == "vcpkg.json") return "vcpkg";
  return std::nullopt;
}

inline std::string trim(const std::string& s) {
  std::size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

/// The package name at the start of a requirement: "pandas" of "pandas[sql]>=2.1 ;
/// python_version>'3'".
inline std::string requirement_name(const std::string& requirement) {
  std::size_t end = 0;
  while (end < requirement.size() &&
         (std::isalnum(static_cast<unsigned char>(requirement[end])) || requirement[end] == '-' ||
          requirement[end] == '_' || requirement[end] == '.')) {
    ++end;
  }
  return requirement.substr(0, end);
}

inline std::vector<std::string> parse_requirements_txt(std::istream& in) {
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    line = trim(line.substr(0, line.find('#')));
    if (line.empty() || line[0] == '-') continue;  // blank, comment, or an option like -r base.txt
    if (std::string name = requirement_name(line); !name.empty()) names.push_back(name);
  }
  return names;
}

inline std::vector<std::string> parse_package_json(std::istream& in) {
  std::vector<std::string> names;
  auto document = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  for (const char* section : {"dependencies", "devDependencies", "peerDependencies"}) {
    if (!document.is_object() || !document.contains(section) || !document[section].is_object()) {
      continue;
    }
    for (const auto& item : document[section].items()) names.push_back(item.key());
  }
  return names;
}

/// The keys of the given `[section]`s of a TOML file (Cargo.toml's
/// `[dependencies]`, Poetry's `[tool.poetry.dependencies]`).
inline std::vector<std::string> toml_section_keys(std::istream& in,
                                                  const std::vector<std::string>& sections) {
  std::vector<std::string> names;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    line = trim(line.substr(0, line.find('#')));
    if (!line.empty() && line[0] == '[') {
      inside = std::find(sections.begin(), sections.end(), line) != sections.end();
    } else if (inside && line.find('=') != std::string::npos) {
      std::string key = trim(line.substr(0, line.find_first_of("=.")));
      if (!key.empty() && key != "python") names.push_back(key);
    }
  }
  return names;
}

/// pyproject.toml: PEP 621 `dependencies = [...]` under `[project]`, or Poetry's table.
inline std::vector<std::string> parse_pyproject(std::istream& in) {
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> names;
  static const std::regex list(R"(\ndependencies\s*=\s*\[([^\]]*)\])");
  static const std::regex quoted(R"re("([^"]+)"|'([^']+)')re");
  if (std::smatch match; std::regex_search(text, match, list)) {
    const std::string items = match[1];
    for (std::sregex_iterator it(items.begin(), items.end(), quoted), end; it != end; ++it) {
      std::string name = requirement_name((*it)[1].matched ? (*it)[1].str() : (*it)[2].str());
      if (!name.empty()) names.push_back(name);
    }
  }
  std::istringstream again(text);
  for (auto& name : toml_section_keys(again, {"[tool.poetry.dependencies]"})) names.push_back(name);
  return names;
}

/// go.mod: `require module version` lines and `require ( ... )` blocks.
inline std::vector<std::string> parse_go_mod(std::istream& in) {
  std::vector<std::string> names;
  bool in_block = false;
  for (std::string line; std::getline(in, line);) {
    line = trim(line.substr(0, line.find("//")));
    if (in_block) {
      if (line == ")") {
        in_block = false;
      } else if (!line.empty()) {
        names.push_back(line.substr(0, line.find(' ')));
      }
    } else if (line == "require (") {
      in_block = true;
    } else if (line.rfind("require ", 0) == 0) {
      std::string rest = trim(line.substr(8));
      names.push_back(rest.substr(0, rest.find(' ')));
    }
  }
  return names;
}

/// Every match of `pattern`'s first group in the file.
inline std::vector<std::string> regex_names(std::istream& in, const std::regex& pattern) {
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> names;
  for (std::sregex_iterator it(text.begin(), text.end(), pattern), end; it != end; ++it) {
    names.push_back((*it)[1]);
  }
  return names;
}

/// The dependency names in manifest `path` of the given ecosystem (see `dependencies`).
inline std::vector<std::string> parse_manifest(const std::string& path,
                                               const std::string& ecosystem) {
  std::ifstream in(path);
  if (ecosystem == "npm") return parse_package_json(in);
  if (ecosystem == "pip") return parse_requirements_txt(in);
  if (ecosystem == "python") return parse_pyproject(in);
  if (ecosystem == "cargo") {
    return toml_section_keys(in, {"[dependencies]", "[dev-dependencies]", "[build-dependencies]"});
  }
  if (ecosystem == "go") return parse_go_mod(in);
  if (ecosystem == "maven") {
    static const std::regex coordinates(
        R"(<dependency>\s*<groupId>[^<]+</groupId>\s*<artifactId>([^<]+)</artifactId>)");
    return regex_names(in, coordinates);
  }
  if (ecosystem == "cmake") {
    static const std::regex find_package(R"(find_package\s*\(\s*([A-Za-z0-9_.+-]+))");
    return regex_names(in, find_package);
  }
  if (ecosystem == "conan") {
    static const std::regex reference(R"re(["']?([A-Za-z0-9_.+-]+)/[0-9][^"'\s,)]*)re");
    return regex_names(in, reference);
  }
  if (ecosystem == "vcpkg") {
    std::vector<std::string> names;
    auto document = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (document.is_object() && document.contains("dependencies") &&
        document["dependencies"].is_array()) {
      for (const auto& item : document["dependencies"]) {
        if (item.is_string()) {
          names.push_back(item);
        } else if (item.is_object() && item.contains("name") && item["name"].is_string()) {
          names.push_back(item["name"]);
        }
      }
    }
    return names;
  }
  return {};
}

/// The dependency names in manifest `path` of the given ecosystem, each once, in file order.
inline std::vector<std::string> dependencies(const std::string& path,
                                             const std::string& ecosystem) {
  std::vector<std::string> unique;
  for (std::string& name : parse_manifest(path, ecosystem)) {
    if (std::find(unique.begin(), unique.end(), name) == unique.end()) {
      unique.push_back(std::move(name));
    }
  }
  return unique;
}

}  // namespace manifests
