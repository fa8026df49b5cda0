//! The smuggling and framing corpus: ambiguous and malformed HTTP/1.1 heads and bodies.
