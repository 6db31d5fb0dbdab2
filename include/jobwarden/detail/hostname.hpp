#pragma once
#include <unistd.h>
#include <string>
namespace jobwarden::detail { inline std::string local_hostname() { char name[256] = {}; if (::gethostname(name, sizeof name - 1) != 0) return {}; return name; } }
