"""Small generic tools every layer may use: single flight, a bounded LRU map, a deadline."""
