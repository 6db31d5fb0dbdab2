#pragma once
/// \file
/// Directory plumbing for job directories: opening a directory relative to
/// another without following a symlink, listing one, `mkdir -p`, and removing
/// a tree without ever following a link out of it (retention's `clean`).

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/owned_fd.hpp"

namespace jobwarden::detail {

/// Opens the directory `name` inside `parent_fd` for reading, refusing a
/// symlink (`ELOOP`) and anything that is not a directory (`ENOTDIR`).
inline OwnedFd open_directory_at(int parent_fd, const char* name, std::error_code& ec) noexcept {
  OwnedFd dir(::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  ec = dir ? std::error_code{} : normalize_nofollow_error(errno_code());
  if (ec == std::errc::not_a_directory) {
    // Linux checks O_DIRECTORY before O_NOFOLLOW: tell a symlink from a file.
    struct stat info {};
    if (::fstatat(parent_fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(info.st_mode)) {
      ec = std::make_error_code(std::errc::too_many_symbolic_link_levels);
    }
  }
  return dir;
}

/// Opens a directory by path as given by the caller (its configuration; links
/// in it are followed, as for any path a user types).
inline OwnedFd open_directory(const std::string& path, std::error_code& ec) noexcept {
  OwnedFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ec = dir ? std::error_code{} : errno_code();
  return dir;
}

/// One entry of a directory listing.
struct DirectoryEntry {
  std::string name;
  unsigned char type = DT_UNKNOWN;  ///< `d_type`: DT_DIR, DT_REG, DT_LNK, or DT_UNKNOWN
};

/// Lists `dir_fd` (without `.` and `..`), in no particular order.
inline std::vector<DirectoryEntry> list_directory(int dir_fd, std::error_code& ec) {
  ec.clear();
  std::vector<DirectoryEntry> entries;
  // fdopendir takes ownership of its fd, so it gets a duplicate; the duplicate
  // shares the read position, hence the rewind.
  int duplicate = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (duplicate < 0) {
    ec = errno_code();
    return entries;
  }
  DIR* stream = ::fdopendir(duplicate);
  if (stream == nullptr) {
    ec = errno_code();
    ::close(duplicate);
    return entries;
  }
  ::rewinddir(stream);
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(stream);
    if (entry == nullptr) {
      if (errno != 0) ec = errno_code();
      break;
    }
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    entries.push_back({std::string(name), entry->d_type});
  }
  ::closedir(stream);
  return entries;
}

/// `mkdir -p`: creates `path` and its missing parents. An existing directory
/// (or a symlink to one: the root is the caller's configuration) is fine.
inline std::error_code make_directories(const std::string& path, mode_t mode = 0777) {
  if (path.empty()) return std::make_error_code(std::errc::no_such_file_or_directory);
  for (std::size_t end = 1; end <= path.size(); ++end) {
    if (end != path.size() && path[end] != '/') continue;
    if (path[end - 1] == '/') continue;  // "a//b": nothing new to create
    const std::string prefix = path.substr(0, end);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) return errno_code();
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return errno_code();
  if (!S_ISDIR(info.st_mode)) return std::make_error_code(std::errc::not_a_directory);
  return {};
}

/// Removes `name` inside `parent_fd` and, if it is a directory, everything in
/// it, like `rm -rf` but never following a symlink: a link is unlinked, not
/// entered, so nothing outside the tree can be removed. Stops at the first
/// error and returns it (what was removed so far stays removed).
inline std::error_code remove_tree_at(int parent_fd, const std::string& name, int depth_left = 64) {
  struct stat info {};
  if (::fstatat(parent_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? std::error_code{} : errno_code();
  }
  if (!S_ISDIR(info.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) return errno_code();
    return {};
  }
  if (depth_left <= 0) return std::make_error_code(std::errc::filename_too_long);
  std::error_code ec;
  OwnedFd dir = open_directory_at(parent_fd, name.c_str(), ec);
  if (ec) return ec;
  const std::vector<DirectoryEntry> entries = list_directory(dir.get(), ec);
  if (ec) return ec;
  for (const DirectoryEntry& entry : entries) {
    if (auto child_ec = remove_tree_at(dir.get(), entry.name, depth_left - 1)) return child_ec;
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return errno_code();
  return {};
}

}  // namespace jobwarden::detail
