//! Silent connections, slowloris and connection floods: the connection limit reclaims idle connections.
