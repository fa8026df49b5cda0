//! Hung and failing backends: timeouts count towards max_fails, the backend leaves rotation.
