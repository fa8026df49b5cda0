//! A plugin's circuit breaker cannot be tripped for every client by one client's input.
