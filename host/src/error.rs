//! The one place where a failure becomes an HTTP response.
