"""The edge around the pure pipeline: what runs it loads its inputs and owns its I/O."""
