#pragma once
/// \file
/// Kept for compatibility: the event loop was called `ExitWatcher` and lived
/// here. It is `detail::EventLoop` in event_loop.hpp now.

#include "jobwarden/detail/event_loop.hpp"

namespace jobwarden::detail {

/// Deprecated: the old name of `EventLoop`.
using ExitWatcher = EventLoop;

}  // namespace jobwarden::detail
