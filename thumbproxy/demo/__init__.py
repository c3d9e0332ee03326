"""The demo's sample archive: frames generated on first use."""
