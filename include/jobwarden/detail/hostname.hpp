#pragma once
/// \file
/// This machine's host name, as the journal's job line records it for its supervisor: a
/// pid (and its start time) proves a process only on the host that wrote it,
/// so readers and recovery compare the recorded name with this one.

#include <unistd.h>

#include <string>

namespace jobwarden::detail {

/// The host name (`gethostname`), empty when it cannot be had.
inline std::string local_hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  return name;
}

}  // namespace jobwarden::detail
