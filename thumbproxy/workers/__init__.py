"""Render worker processes: the pool and their memory allocator settings."""
