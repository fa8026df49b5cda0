//! Hop-by-hop stripping cannot remove what gale or a plugin adds; Host and Upgrade rules.
