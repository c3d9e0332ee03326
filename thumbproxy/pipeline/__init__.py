"""How an answer is found or made: the thumbnailer, its keys, frame checks, colour frames, the latest frame."""
