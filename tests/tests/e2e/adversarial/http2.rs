//! HTTP/2 abuse with a real HTTP/2 client library: rapid reset, CONTINUATION floods, host vs :authority.
