#pragma once
/// \file
/// Kept for compatibility: the orphan guard was called `Sentinel` and lived
/// here. It is `detail::OrphanGuard` in orphan_guard.hpp now.

#include "jobwarden/detail/orphan_guard.hpp"

namespace jobwarden::detail {

/// Deprecated: the old name of `OrphanGuard`.
using Sentinel = OrphanGuard;

}  // namespace jobwarden::detail
