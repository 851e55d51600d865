"""Model merging: mergekit-compatible methods, plans and streaming execution."""
