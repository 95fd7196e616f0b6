//! DHCPv6 server (in progress)
