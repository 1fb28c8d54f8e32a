"""A pool of workers serialising their writes to a shared resource with a zvsr lock and its fencing token."""
