"""The network room: peer authentication, HTTP clients, TLS, feed sync and node processes."""
