//! Docker Swarm backend (in progress).
