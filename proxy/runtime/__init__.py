"""The trio layer: sockets, tasks and timers around the pure relay core."""
